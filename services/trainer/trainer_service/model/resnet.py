"""The bottleneck ResNet for 64x64x3 Tiny ImageNet, as a functional Keras 3 model.

Architecture (channels-last): 3x3 "tail" conv to ``filters`` (same, no bias) -> SpecialBottleneck
(its shortcut a plain 1x1 conv, as in the homework) -> for each level with ``r`` repeats: ``r``
Bottlenecks at the current width, then a Downsample (H and W halve, the width doubles) ->
BatchNorm -> ReLU -> GlobalAveragePooling2D -> Dense logits (float32, even under a mixed-precision
policy). With width 64 and levels (4, 6, 3, 2) it has 3,137,800 parameters (BatchNorm moving
statistics included) and 0.4057 G multiply-adds per image.

It is built only from the registered blocks in :mod:`.blocks`, ``keras.layers`` and
``keras.ops``, so it runs on the TensorFlow and JAX backends, and ``get_config``/``from_config``
and ``.keras`` save/load work without ``custom_objects``.

Defects of the original homework model fixed here:

* the "half" width preset was a float (``32.0``); widths are ints now (:data:`WIDTHS`) and
  anything but a positive int multiple of 4 is rejected with a ValueError;
* the input was declared channels-first (3x64x64) while every convolution was channels-last;
  the input is now 64x64x3, channels-last, like every layer;
* the ``training`` flag was not passed to every block, so BatchNorm used the wrong statistics
  (moving statistics while training, or batch statistics at inference); every block passes it
  down to every BatchNorm explicitly;
* the regularizer scale was defined but never applied; ``weight_decay`` now puts
  ``keras.regularizers.L2(weight_decay)`` on every Conv2D and the Dense layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers

from trainer_service.model.architecture import (  # noqa: F401  (the shape facts, re-exported)
    DEFAULT_CLASSES,
    DEFAULT_LEVELS,
    INPUT_SHAPE,
    WIDTHS,
    check_levels,
    check_positive_int,
    parse_levels,
    resolve_width,
)
from trainer_service.model.blocks import (
    Bottleneck,
    Downsample,
    SpecialBottleneck,
    check_weight_decay,
    l2_regularizer,
)


def build_resnet(
    classes: int = DEFAULT_CLASSES,
    filters: int = WIDTHS["full"],
    levels: Sequence[int] = DEFAULT_LEVELS,
    *,
    weight_decay: float = 0.0,
    zero_init_residual: bool = False,
    preprocessing: layers.Layer | Sequence[layers.Layer] | None = None,
    input_shape: tuple[int, int, int] = INPUT_SHAPE,
    input_dtype: str = "float32",
    name: str = "resnet",
) -> keras.Model:
    """Build the functional bottleneck ResNet (freshly initialised); it outputs logits.

    ``preprocessing`` (a layer or layers, e.g. ``model.preprocess.Preprocess()``, which
    takes uint8 images: pass ``input_dtype="uint8"``, then ``model.augment.Augment``) is applied
    right after the Input. ``weight_decay`` puts an L2 regularizer (``wd * sum(w**2)`` added to
    the loss) on every Conv2D and the Dense. ``zero_init_residual`` starts every residual
    branch at zero (see ``blocks._ResidualBlock``).
    """
    classes = check_positive_int("classes", classes)
    filters = check_positive_int("filters", filters, multiple=4)
    levels = check_levels(levels)
    weight_decay = check_weight_decay(weight_decay)
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(isinstance(d, int) and d >= 1 for d in shape):
        raise ValueError(f"input_shape must be (height, width, channels), got {input_shape!r}")

    inputs = keras.Input(shape=shape, dtype=input_dtype, name="images")
    x = inputs
    if isinstance(preprocessing, layers.Layer):
        preprocessing = [preprocessing]
    for layer in preprocessing or ():
        x = layer(x)
    x = layers.Conv2D(
        filters,
        3,
        padding="same",
        use_bias=False,
        kernel_regularizer=l2_regularizer(weight_decay),
        name="tail_conv",
    )(x)
    block = {"weight_decay": weight_decay, "zero_init_residual": zero_init_residual}
    x = SpecialBottleneck(filters, **block, name="special_bottleneck")(x)
    width = filters
    for level, repeats in enumerate(levels, start=1):
        for i in range(1, repeats + 1):
            x = Bottleneck(width, **block, name=f"level{level}_bottleneck{i}")(x)
        x = Downsample(width, **block, name=f"level{level}_downsample")(x)
        width *= 2
    x = layers.BatchNormalization(name="final_bn")(x)
    x = layers.ReLU(name="final_relu")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = layers.Dense(
        classes,
        kernel_regularizer=l2_regularizer(weight_decay),
        dtype="float32",
        name="logits",
    )(x)
    return keras.Model(inputs, outputs, name=name)
