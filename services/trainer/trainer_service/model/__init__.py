"""The bottleneck ResNet (Keras 3, TensorFlow or JAX backend) and its size/cost report."""

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
