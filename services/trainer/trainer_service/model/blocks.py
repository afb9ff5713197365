"""The ResNet's building blocks, as registered Keras 3 layers (pure ``keras.layers``/``keras.ops``).

Every block is pre-activation: a "basic" unit is BatchNorm -> ReLU -> Conv2D (same padding, no
bias), and the residual blocks add a stack of basics to an identity (or 1x1-projected) shortcut.
``training`` is passed to every BatchNorm explicitly. Sublayers have fixed names, so variable paths
are deterministic (e.g. ``level1_bottleneck1/reduce/conv/kernel``).
"""

from __future__ import annotations

import math
import numbers

import keras
from keras import layers, ops

from trainer_service.model.architecture import check_positive_int

PACKAGE = "trainer_service"


def check_weight_decay(value) -> float:
    """Return the L2 scale as a float; it must be a finite number >= 0."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value < 0:
        raise ValueError(f"weight_decay must be a finite number >= 0, got {value!r}")
    return float(value)


def l2_regularizer(weight_decay: float):
    """``keras.regularizers.L2(weight_decay)`` (adds ``wd * sum(w**2)``), or None for 0."""
    weight_decay = check_weight_decay(weight_decay)
    return keras.regularizers.L2(weight_decay) if weight_decay > 0 else None


@keras.saving.register_keras_serializable(package=PACKAGE)
class ResnetBasic(layers.Layer):
    """BatchNorm -> ReLU -> Conv2D(``filters``, ``kernel_size``, ``strides``, same, no bias).

    ``zero_init`` starts the convolution's kernel at zero (the unit then outputs zeros).
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int = 3,
        strides: int = 1,
        weight_decay: float = 0.0,
        zero_init: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = check_positive_int("filters", filters)
        self.kernel_size = check_positive_int("kernel_size", kernel_size)
        self.strides = check_positive_int("strides", strides)
        self.weight_decay = check_weight_decay(weight_decay)
        self.zero_init = bool(zero_init)
        policy = self.dtype_policy
        self.bn = layers.BatchNormalization(name="bn", dtype=policy)
        self.relu = layers.ReLU(name="relu", dtype=policy)
        self.conv = layers.Conv2D(
            self.filters,
            self.kernel_size,
            strides=self.strides,
            padding="same",
            use_bias=False,
            kernel_initializer="zeros" if self.zero_init else "glorot_uniform",
            kernel_regularizer=l2_regularizer(self.weight_decay),
            name="conv",
            dtype=policy,
        )

    def build(self, input_shape):
        self.bn.build(input_shape)
        self.conv.build(input_shape)

    def call(self, inputs, training=None):
        x = self.bn(inputs, training=training)
        x = self.relu(x)
        return self.conv(x)

    def compute_output_shape(self, input_shape):
        return self.conv.compute_output_shape(input_shape)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "weight_decay": self.weight_decay,
            "zero_init": self.zero_init,
        }


class _ResidualBlock(layers.Layer):
    """``residual(x) + shortcut(x)``: a chain of basics plus an identity or a 1x1 projection.

    ``zero_init_residual`` starts the residual branch's last convolution at zero, so the block
    starts as its shortcut (the identity, for a Bottleneck). This is the pre-activation form of
    Goyal et al.'s zero-initialised last BatchNorm: here the branch ends with a convolution, and a
    zero BatchNorm scale before a ReLU would get no gradient (ReLU'(0) = 0) and stay dead.
    """

    #: Subclasses set their sublayers in __init__, after this class's.
    _FILTERS_MULTIPLE = 1
    reduce: ResnetBasic
    conv3x3: ResnetBasic
    expand: ResnetBasic
    projection: ResnetBasic | layers.Conv2D | None

    def __init__(
        self, filters: int, weight_decay: float = 0.0, zero_init_residual: bool = False, **kwargs
    ):
        super().__init__(**kwargs)
        self.filters = check_positive_int("filters", filters, multiple=self._FILTERS_MULTIPLE)
        self.weight_decay = check_weight_decay(weight_decay)
        self.zero_init_residual = bool(zero_init_residual)

    def _basic(self, filters, kernel_size=1, strides=1, *, name, last=False):
        return ResnetBasic(
            filters,
            kernel_size,
            strides,
            weight_decay=self.weight_decay,
            zero_init=last and self.zero_init_residual,
            name=name,
            dtype=self.dtype_policy,
        )

    @property
    def residual_layers(self) -> tuple[ResnetBasic, ...]:
        return (self.reduce, self.conv3x3, self.expand)

    def _check_input(self, input_shape):
        """Hook for subclasses that need a given input channel count."""

    def build(self, input_shape):
        self._check_input(input_shape)
        shape = tuple(input_shape)
        for basic in self.residual_layers:
            basic.build(shape)
            shape = basic.compute_output_shape(shape)
        if self.projection is not None:
            self.projection.build(input_shape)

    def residual(self, inputs, training=None):
        """The residual branch f(x) alone (for ``y = shortcut(x) + f(x)``)."""
        x = inputs
        for basic in self.residual_layers:
            x = basic(x, training=training)
        return x

    def shortcut(self, inputs, training=None):
        if self.projection is None:
            return inputs
        if isinstance(self.projection, ResnetBasic):
            return self.projection(inputs, training=training)
        return self.projection(inputs)

    def call(self, inputs, training=None):
        return ops.add(
            self.shortcut(inputs, training=training), self.residual(inputs, training=training)
        )

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        for basic in self.residual_layers:
            shape = basic.compute_output_shape(shape)
        return shape

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "weight_decay": self.weight_decay,
            "zero_init_residual": self.zero_init_residual,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class Bottleneck(_ResidualBlock):
    """Identity + (1x1 to Ni/4, 3x3 to Ni/4, 1x1 to Ni); input and output have Ni channels."""

    _FILTERS_MULTIPLE = 4

    def __init__(self, filters: int, weight_decay: float = 0.0, **kwargs):
        super().__init__(filters, weight_decay, **kwargs)
        inner = self.filters // 4
        self.reduce = self._basic(inner, 1, name="reduce")
        self.conv3x3 = self._basic(inner, 3, name="conv3x3")
        self.expand = self._basic(self.filters, 1, name="expand", last=True)
        self.projection = None

    def _check_input(self, input_shape):
        channels = input_shape[-1]
        if channels != self.filters:
            raise ValueError(
                f"Bottleneck(filters={self.filters}) needs {self.filters} input channels "
                f"(an identity shortcut), got {channels}"
            )


@keras.saving.register_keras_serializable(package=PACKAGE)
class SpecialBottleneck(Bottleneck):
    """Bottleneck whose shortcut is a 1x1 convolution to Ni, so any input channel count works.

    The shortcut convolution is a plain Conv2D (no BatchNorm/ReLU, no bias), as in the original
    homework model: the reference parameter count (3,137,800 at width 64) depends on it.
    """

    def __init__(self, filters: int, weight_decay: float = 0.0, **kwargs):
        super().__init__(filters, weight_decay, **kwargs)
        self.projection = layers.Conv2D(
            self.filters,
            1,
            padding="same",
            use_bias=False,
            kernel_regularizer=l2_regularizer(self.weight_decay),
            name="projection",
            dtype=self.dtype_policy,
        )

    def _check_input(self, input_shape):
        """Any channel count: the projection maps it to ``filters``."""


@keras.saving.register_keras_serializable(package=PACKAGE)
class Downsample(_ResidualBlock):
    """Halve H and W, double the width: (1x1/2 to Ni/2, 3x3 to Ni/2, 1x1 to 2Ni) + basic 1x1/2."""

    _FILTERS_MULTIPLE = 2

    def __init__(self, filters: int, weight_decay: float = 0.0, **kwargs):
        super().__init__(filters, weight_decay, **kwargs)
        self.reduce = self._basic(self.filters // 2, 1, 2, name="reduce")
        self.conv3x3 = self._basic(self.filters // 2, 3, name="conv3x3")
        self.expand = self._basic(2 * self.filters, 1, name="expand", last=True)
        self.projection = self._basic(2 * self.filters, 1, 2, name="projection")
