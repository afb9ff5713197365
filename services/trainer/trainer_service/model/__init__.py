"""The bottleneck ResNet as Keras 3 layers (TensorFlow or JAX backend).

Importing this package registers the layers a run's saved model holds (the blocks, the
``Preprocess`` and ``Augment`` layers); :func:`trainer_service.saved.load_model` loads a run's
files with them.
Its size and cost in closed form: :mod:`trainer_service.architecture` (no Keras needed).
"""

import shard_format.preprocess  # noqa: F401  (registers Preprocess)
from trainer_service.model.augment import Augment
from trainer_service.model.blocks import Bottleneck, Downsample, ResnetBasic, SpecialBottleneck
from trainer_service.model.resnet import build_resnet

__all__ = [
    "Augment",
    "Bottleneck",
    "Downsample",
    "ResnetBasic",
    "SpecialBottleneck",
    "build_resnet",
]
