"""The bottleneck ResNet (Keras 3, TensorFlow or JAX backend) and its size/cost report.

Importing this package registers every custom object a run's saved files use (the blocks, the
``Preprocess`` layer, the learning-rate schedule of the saved optimizer), so that this is the one
import ``keras.saving.load_model`` needs for ``model.keras`` and the checkpoints::

    import keras
    import trainer_service.model  # registers the project's layers and learning-rate schedule
    model = keras.saving.load_model("runs/<id>/model.keras")
"""

import shard_format.preprocess  # noqa: F401  (registers Preprocess)
import trainer_service.training.schedule  # noqa: F401  (registers EpochSchedule)
from trainer_service.model.blocks import Bottleneck, Downsample, ResnetBasic, SpecialBottleneck
from trainer_service.model.report import count_macs, count_params, model_report
from trainer_service.model.resnet import (
    DEFAULT_CLASSES,
    DEFAULT_LEVELS,
    INPUT_SHAPE,
    WIDTHS,
    build_resnet,
    check_levels,
    parse_levels,
    resolve_width,
)

__all__ = [
    "DEFAULT_CLASSES",
    "DEFAULT_LEVELS",
    "INPUT_SHAPE",
    "WIDTHS",
    "Bottleneck",
    "Downsample",
    "ResnetBasic",
    "SpecialBottleneck",
    "build_resnet",
    "check_levels",
    "count_macs",
    "count_params",
    "model_report",
    "parse_levels",
    "resolve_width",
]
