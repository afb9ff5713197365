"""What a training run is asked to do: :class:`TrainConfig`, the body of ``POST /v1/runs``.

Defaults are the homework's (batch 128, 72 epochs, SGD momentum 0.9, learning rate 0.01 times 0.1
at epoch 64), except the weight decay, which the homework set far too strong (see
:data:`DEFAULT_WEIGHT_DECAY`). Every invalid value fails validation with an error located at its
field, which the API turns into a 422 naming that field.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from shard_format.schema import DATASET_NAME_PATTERN

# Keras-free: the API process validates configs without importing Keras (or TensorFlow).
from trainer_service.architecture import (
    MAX_LEVELS,
    MAX_REPEATS,
    check_levels,
    check_shape,
    resolve_width,
)

#: Scale of ``keras.regularizers.L2`` on every Conv2D/Dense kernel. Keras adds ``l * sum(w**2)``
#: to the loss, whose gradient is ``2 * l * w``: with SGD this equals the classic (coupled)
#: weight decay ``wd = 2 * l``, so 2.5e-4 is the usual ``wd = 5e-4`` of ResNets trained from
#: scratch on CIFAR and Tiny ImageNet for 50-100 epochs. The homework's 0.1 (``wd = 0.2``) makes
#: the penalty dominate the cross-entropy and the network cannot fit.
DEFAULT_WEIGHT_DECAY = 2.5e-4

_CHECKPOINT_SUFFIX = ".keras"


#: Largest global batch: 4096 images of 64x64x3 uint8 are 50 MB per step on the host; a larger
#: batch than that no longer fits a full-width model's activations on one GPU.
MAX_BATCH = 4096


class TrainConfig(BaseModel):
    """A training run's configuration (validated; unknown fields are rejected)."""

    # Strict: no string or boolean stands in for a number; NaN and infinities are refused.
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    dataset: str = Field(
        ...,
        pattern=DATASET_NAME_PATTERN,
        description="Name of a prepared dataset under <data_root>/datasets/.",
        examples=["tiny-imagenet-200"],
    )
    width: Literal["full", "half"] | int = Field(
        "full",
        description='Filters of the first level: "full" (64), "half" (32) or a multiple of 4.',
    )
    levels: list[Annotated[int, Field(ge=0, le=MAX_REPEATS)]] = Field(
        default_factory=lambda: [4, 6, 3, 2],
        min_length=1,
        max_length=MAX_LEVELS,
        description="Bottleneck repeats per level (each level ends with a Downsample).",
    )
    epochs: int = Field(72, ge=1, le=10_000)
    batch_size: int = Field(128, ge=1, le=MAX_BATCH, description="Global batch (all replicas).")
    optimizer: Literal["sgd", "adam"] = "sgd"
    learning_rate: float = Field(0.01, gt=0, le=10, description="Peak (base) learning rate.")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum (ignored by Adam).")
    schedule: Literal["step", "cosine", "constant"] = Field(
        "step",
        description="step: times decay_factor at each of decay_epochs; cosine: to 0 at the end.",
    )
    decay_epochs: list[int] = Field(
        default_factory=lambda: [64],
        description="Step schedule: epochs (0-based, i.e. after that many) where the LR drops.",
    )
    decay_factor: float = Field(0.1, gt=0, le=1)
    warmup_epochs: float = Field(
        0.0, ge=0, description="Linear warm-up from ~0 to learning_rate over this many epochs."
    )
    weight_decay: float = Field(
        DEFAULT_WEIGHT_DECAY,
        ge=0,
        le=1,
        description="keras L2 scale on every kernel (adds wd*sum(w^2); SGD-equivalent decay 2*wd).",
    )
    mixed_precision: Literal["auto", "bfloat16", "float16", "off"] = Field(
        "auto", description="auto: bfloat16 on a GPU, off (float32) on CPU."
    )
    jit_compile: Literal["auto"] | bool = Field("auto", description="XLA; auto: on GPU only.")
    steps_per_execution: Literal["auto"] | int = Field(
        "auto", description="Batches per compiled call; auto: 1 on CPU, 8 on a GPU."
    )
    keep_checkpoints: int = Field(5, ge=1, le=1000, description="Epoch checkpoints kept (+ best).")
    seed: int = Field(0, ge=0, lt=2**31)
    deterministic: bool = Field(
        False,
        description=(
            "Train batches in the same order on every run (a slower input pipeline); with the "
            "seed, a run on CPU then repeats bit for bit."
        ),
    )
    init_checkpoint: str | None = Field(
        None,
        description=(
            "A .keras checkpoint, relative to the data root (e.g. "
            "runs/<id>/checkpoints/best.keras), whose weights the new run starts from (epoch 0, "
            "fresh optimizer)."
        ),
    )
    limit_train_steps: int | None = Field(None, ge=1, description="Cap batches per epoch (smoke).")
    limit_val_steps: int | None = Field(None, ge=1, description="Cap validation batches (smoke).")
    cache: Literal["auto"] | bool = Field(
        "auto", description="Cache decoded images in memory; auto: when they fit."
    )
    export_savedmodel: bool = Field(
        True, description="Also export a TF SavedModel (TensorFlow backend only)."
    )

    @field_validator("width")
    @classmethod
    def _check_width(cls, value):
        resolve_width(value)
        return value

    @field_validator("levels")
    @classmethod
    def _check_levels(cls, value, info: ValidationInfo):
        levels = check_levels(value)
        width = info.data.get("width")
        if width is not None:  # else width itself was invalid, and said so
            check_shape(resolve_width(width), levels)
        return list(levels)

    @field_validator("steps_per_execution")
    @classmethod
    def _check_steps_per_execution(cls, value):
        if value != "auto" and (isinstance(value, bool) or value < 1):
            raise ValueError(f'must be "auto" or an int >= 1, got {value!r}')
        return value

    @field_validator("decay_epochs")
    @classmethod
    def _check_decay_epochs(cls, value: list[int]):
        if any(e < 1 for e in value):
            raise ValueError(f"every decay epoch must be >= 1, got {value}")
        if value != sorted(set(value)):
            raise ValueError(f"decay epochs must be strictly increasing, got {value}")
        return value

    @field_validator("warmup_epochs")
    @classmethod
    def _check_warmup(cls, value: float, info: ValidationInfo):
        epochs = info.data.get("epochs")
        if epochs is not None and value > epochs:
            raise ValueError(f"warm-up ({value} epochs) is longer than the run ({epochs} epochs)")
        return value

    @field_validator("init_checkpoint")
    @classmethod
    def _check_init_checkpoint(cls, value: str | None):
        if value is None:
            return value
        path = PurePosixPath(value)
        if not value or path.is_absolute() or ".." in path.parts or "\x00" in value:
            raise ValueError(f"must be a relative path inside the data root, got {value!r}")
        if not value.endswith(_CHECKPOINT_SUFFIX):
            raise ValueError(f"must name a {_CHECKPOINT_SUFFIX} checkpoint, got {value!r}")
        return value

    @property
    def filters(self) -> int:
        """The width as an int (presets resolved)."""
        return resolve_width(self.width)
