"""What a training run is asked to do: :class:`TrainConfig`, the body of ``POST /v1/runs``.

Defaults are the homework's (batch 128, 72 epochs, SGD momentum 0.9, learning rate 0.01 times 0.1
at epoch 64, a random flip), except the weight decay, which the homework set far too strong (see
:data:`DEFAULT_WEIGHT_DECAY`). A ``recipe`` (:mod:`.recipes`) fills the fields a request leaves
out. Every invalid value fails validation with an error located at its field, which the API
turns into a 422 naming that field.

The request body and ``config.json`` are one flat object; the engine reads it in typed sections,
each by the one module that uses it (:class:`Network`, :class:`Optimization` and
:class:`Augmentation` by ``engine.train``, :class:`Pipeline` by ``engine.data``, :class:`Compute`
by ``engine.runtime``, :class:`Stopping` by ``engine.stopping``, :class:`Evaluation` by
``engine.evaluate``, :class:`Recording` by ``engine.callbacks``, :class:`Exports` by the job's
export step).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import PurePosixPath
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from shard_format.schema import DATASET_NAME_PATTERN

# Keras-free: the API process validates configs without importing Keras (or TensorFlow).
from trainer_service.model.architecture import (
    MAX_LEVELS,
    MAX_REPEATS,
    check_levels,
    check_shape,
    resolve_width,
)
from trainer_service.runs.recipes import DEFAULT_RECIPE, RECIPE_FIELDS, RECIPES, apply_recipe

#: Scale of ``keras.regularizers.L2`` on every Conv2D/Dense kernel. Keras adds ``l * sum(w**2)``
#: to the loss, whose gradient is ``2 * l * w``: with SGD this equals the classic (coupled)
#: weight decay ``wd = 2 * l``, so 2.5e-4 is the usual ``wd = 5e-4`` of ResNets trained from
#: scratch on CIFAR and Tiny ImageNet for 50-100 epochs. The homework's 0.1 (``wd = 0.2``) makes
#: the penalty dominate the cross-entropy and the network cannot fit.
DEFAULT_WEIGHT_DECAY = 2.5e-4

_CHECKPOINT_SUFFIX = ".keras"


#: What a tag may be, and how many a run may have.
TAG_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:=+-]{0,31}$"
MAX_TAGS = 16
#: Most automatic restarts a run may ask for.
MAX_RESTARTS = 10
#: Longest time limit or budget a run may give itself, in minutes (30 days).
MAX_MINUTES = 30 * 24 * 60
#: Most GPUs one run may ask for.
MAX_DEVICES = 64
#: Largest global batch: 4096 images of 64x64x3 uint8 are 50 MB per step on the host; a larger
#: batch than that no longer fits a full-width model's activations on one GPU.
MAX_BATCH = 4096


class EarlyStopping(BaseModel):
    """Stop when the monitored val score has not improved for ``patience`` epochs."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    monitor: Literal["val_accuracy", "val_loss"] = Field(
        "val_accuracy", description="val_accuracy (higher is better) or val_loss (lower)."
    )
    patience: int = Field(10, ge=1, le=10_000, description="Epochs without improvement.")
    min_delta: float = Field(
        0.0, ge=0, le=1e6, description="Smallest change that counts as an improvement."
    )


# -- the sections the engine reads (views of a TrainConfig, named as its fields) --------------


@dataclass(frozen=True)
class Network:
    """The network: its shape, its L2 weight decay, how its residual branches start."""

    filters: int
    levels: list[int]
    weight_decay: float
    zero_init_residual: bool
    seed: int


@dataclass(frozen=True)
class Optimization:
    """The optimizer and its learning-rate schedule (over ``epochs``)."""

    optimizer: str
    learning_rate: float
    momentum: float
    nesterov: bool
    schedule: str
    decay_epochs: list[int]
    decay_factor: float
    warmup_epochs: float
    warmup_steps: int | None
    epochs: int
    decoupled_weight_decay: float
    decay_norm_and_bias: bool
    use_ema: bool
    ema_momentum: float


@dataclass(frozen=True)
class Augmentation:
    """What training does to its images and labels (evaluation never does any of it)."""

    flip: bool
    crop_padding: int
    resized_crop_scale: list[float] | None
    resized_crop_ratio: list[float]
    mixup_alpha: float
    cutmix_alpha: float
    cutmix_prob: float
    label_smoothing: float
    seed: int

    @property
    def crops(self) -> bool:
        return bool(self.crop_padding) or self.resized_crop_scale is not None

    @property
    def mixing(self) -> bool:
        return bool(self.mixup_alpha or self.cutmix_alpha)


@dataclass(frozen=True)
class Pipeline:
    """The input pipelines: batches, caching, order, and the smoke-run limits."""

    batch_size: int
    cache: str | bool
    deterministic: bool
    limit_train_steps: int | None
    limit_val_steps: int | None


@dataclass(frozen=True)
class Compute:
    """Where and how the step computes (``"auto"`` resolved per machine by the engine)."""

    mixed_precision: str
    jit_compile: str | bool
    steps_per_execution: str | int
    batch_size: int


@dataclass(frozen=True)
class Stopping:
    """When a run ends before ``epochs``: early stopping, a time limit, a time budget."""

    epochs: int
    early_stopping: EarlyStopping | None
    max_runtime_min: float | None
    time_budget_min: float | None


@dataclass(frozen=True)
class Evaluation:
    """How the best checkpoint is scored and the test split predicted."""

    batch_size: int
    tta_flip: bool
    limit_val_steps: int | None


@dataclass(frozen=True)
class Recording:
    """What the run records after each epoch."""

    epochs: int
    batch_size: int
    keep_checkpoints: int
    tta_flip: bool


@dataclass(frozen=True)
class Exports:
    """The exports made when the run ends (beside ``model.keras``)."""

    export_savedmodel: bool
    export_onnx: bool

    @property
    def formats(self) -> tuple[str, ...]:
        wanted = (("savedmodel", self.export_savedmodel), ("onnx", self.export_onnx))
        return tuple(name for name, on in wanted if on)


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
    name: str | None = Field(
        None,
        min_length=1,
        max_length=100,
        pattern=r"^[^\x00-\x1f\x7f]+$",
        description="A name for people (need not be unique: the id is what names the run).",
        examples=["fast-recipe-seed-1"],
    )
    tags: list[Annotated[str, Field(pattern=TAG_PATTERN)]] = Field(
        default_factory=list,
        max_length=MAX_TAGS,
        description="Short labels to find runs by (GET /v1/runs?tag=...).",
        examples=[["baseline", "half-width"]],
    )
    recipe: Literal[tuple(RECIPES)] = Field(  # type: ignore[valid-type]
        DEFAULT_RECIPE,
        description="A preset of the fields that decide accuracy (GET /v1/recipes lists them): "
        "it fills every field the request leaves out; a field the request sets wins.",
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
    epochs: int = Field(72, ge=1, le=10_000, description="Epochs to train in all.")
    devices: int = Field(
        1,
        ge=1,
        le=MAX_DEVICES,
        description="GPUs the run trains on, data-parallel (a CPU host: slots); it waits in "
        "the queue until that many are free.",
    )
    batch_size: int = Field(128, ge=1, le=MAX_BATCH, description="Global batch (all replicas).")
    optimizer: Literal["sgd", "adam"] = Field(
        "sgd", description="sgd (with momentum) or adam (AdamW with decoupled_weight_decay)."
    )
    learning_rate: float = Field(
        0.01,
        gt=0,
        le=10,
        description="Peak (base) learning rate. For another batch size, scale it linearly "
        "(learning_rate * new_batch / batch: Goyal et al. 2017) and keep a warm-up.",
    )
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum (ignored by Adam).")
    nesterov: bool = Field(False, description="Nesterov momentum (SGD only).")
    schedule: Literal["step", "cosine", "linear", "constant"] = Field(
        "step",
        description="step: times decay_factor at each of decay_epochs; cosine or linear: from "
        "the end of the warm-up to 0 at the end of the run (with a warm-up: one-cycle).",
    )
    decay_epochs: list[int] = Field(
        default_factory=lambda: [64],
        description="Step schedule: epochs (0-based, i.e. after that many) where the LR drops.",
    )
    decay_factor: float = Field(
        0.1, gt=0, le=1, description="Step schedule: the factor at each of decay_epochs."
    )
    warmup_epochs: float = Field(
        0.0, ge=0, description="Linear warm-up from ~0 to learning_rate over this many epochs."
    )
    warmup_steps: int | None = Field(
        None, ge=1, le=10_000_000, description="The warm-up in optimizer steps instead of epochs."
    )
    weight_decay: float = Field(
        DEFAULT_WEIGHT_DECAY,
        ge=0,
        le=1,
        description="keras L2 scale on every kernel (adds wd*sum(w^2); SGD-equivalent decay 2*wd).",
    )
    decoupled_weight_decay: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Decoupled weight decay (the optimizer's weight_decay: each step subtracts "
        "learning_rate * decay * w; with Adam this is AdamW), beside or instead of the L2.",
    )
    decay_norm_and_bias: bool = Field(
        False,
        description="Apply the decoupled weight decay to BatchNorm scales/offsets and biases "
        "too (by default they are excluded, as the published recipes do).",
    )
    zero_init_residual: bool = Field(
        False,
        description="Initialise the last BatchNorm scale of every residual branch to 0, so "
        "each block starts as the identity (Goyal et al. 2017).",
    )
    use_ema: bool = Field(
        False,
        description="Keep an exponential moving average of the weights; validation, the best "
        "checkpoint's choice, the exported model and the predictions use the averaged weights.",
    )
    ema_momentum: float = Field(0.999, gt=0, lt=1, description="Decay of that average per step.")
    flip: bool = Field(
        True,
        description="Random horizontal flip of training images (turn it off where left and "
        "right differ).",
    )
    crop_padding: int = Field(
        0,
        ge=0,
        le=32,
        description="Random crop with this much padding: each training image shifted by up to "
        "this many pixels each way, the uncovered border at the image's mean; 0: off.",
    )
    resized_crop_scale: list[float] | None = Field(
        None,
        min_length=2,
        max_length=2,
        description="Random resized crop of training images: [min, max] fraction of the area "
        "kept (0 < min <= max <= 1), resized back to 64x64; null: off.",
    )
    resized_crop_ratio: list[float] = Field(
        default_factory=lambda: [0.75, 4 / 3],
        min_length=2,
        max_length=2,
        description="Aspect ratio (width / height) range of the random resized crop.",
    )
    mixup_alpha: float = Field(
        0.0,
        ge=0,
        le=10,
        description="MixUp: each training image blended with another (and the loss with its "
        "label) by a weight drawn from Beta(alpha, alpha); 0: off.",
    )
    cutmix_alpha: float = Field(
        0.0,
        ge=0,
        le=10,
        description="CutMix: a box of another training image pasted in (the loss weighted by "
        "the areas), its area fraction drawn from Beta(alpha, alpha); 0: off.",
    )
    cutmix_prob: float = Field(
        0.5,
        ge=0,
        le=1,
        description="With cutmix_alpha: the probability that an image gets CutMix; the others "
        "get MixUp if mixup_alpha is set, else stay as they are.",
    )
    label_smoothing: float = Field(
        0.0, ge=0, le=0.5, description="Label smoothing of the training loss (not validation's)."
    )
    tta_flip: bool = Field(
        False,
        description="Validation and test predictions average the logits of each image and its "
        "mirror (test-time augmentation); the history says which was used.",
    )
    mixed_precision: Literal["auto", "bfloat16", "float16", "off"] = Field(
        "auto", description="auto: bfloat16 on a GPU, off (float32) on CPU."
    )
    jit_compile: Literal["auto"] | bool = Field("auto", description="XLA; auto: on GPU only.")
    steps_per_execution: Literal["auto"] | int = Field(
        "auto", description="Batches per compiled call; auto: 1 on CPU, 8 on a GPU."
    )
    keep_checkpoints: int = Field(5, ge=1, le=1000, description="Epoch checkpoints kept (+ best).")
    seed: int = Field(
        0, ge=0, lt=2**31, description="Seeds the weights, the shuffles and every augmentation."
    )
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
    early_stopping: EarlyStopping | None = Field(
        None,
        description="End the run when the val score stops improving (it ends succeeded, "
        'result.stopped_early = "early_stopping", and exports its best checkpoint).',
    )
    max_runtime_min: float | None = Field(
        None,
        gt=0,
        le=MAX_MINUTES,
        description="Training time limit in minutes (resumes included): the run stops at the "
        "next batch after it, saves a checkpoint and ends succeeded (result.stopped_early = "
        '"max_runtime").',
    )
    time_budget_min: float | None = Field(
        None,
        gt=0,
        le=MAX_MINUTES,
        description="Budgeted training: after its first epoch the run sets its number of "
        "epochs (at most `epochs`) so that training ends within this many minutes, and its "
        "learning-rate schedule spans exactly those epochs.",
    )
    max_restarts: int = Field(
        0,
        ge=0,
        le=MAX_RESTARTS,
        description="Restart the run from its last checkpoint, by itself, up to this many times "
        "when it ends for a reason not its own (its worker killed, out of memory, the service "
        "stopped or died); never for an input fault. 0: a person resumes it.",
    )
    export_savedmodel: bool = Field(
        True, description="At the end, also export a TF SavedModel (savedmodel/), on any backend."
    )
    export_onnx: bool = Field(
        True, description="At the end, also export an ONNX model (model.onnx), on any backend."
    )

    @model_validator(mode="before")
    @classmethod
    def _apply_recipe(cls, data):
        return apply_recipe(data) if isinstance(data, dict) else data

    @field_validator("tags")
    @classmethod
    def _check_tags(cls, value: list[str]):
        if len(set(value)) != len(value):
            raise ValueError(f"tags repeat: {value}")
        return value

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
            raise ValueError(
                f"warm-up ({value} epochs) is longer than the run ({epochs} epochs): shorten "
                "warmup_epochs (a recipe may have set it)"
            )
        return value

    @field_validator("warmup_steps")
    @classmethod
    def _check_warmup_steps(cls, value: int | None, info: ValidationInfo):
        if value is not None and info.data.get("warmup_epochs"):
            raise ValueError("give the warm-up in epochs or in steps, not both")
        return value

    @field_validator("nesterov")
    @classmethod
    def _check_nesterov(cls, value: bool, info: ValidationInfo):
        if value and info.data.get("optimizer") == "adam":
            raise ValueError("Nesterov momentum is for SGD; Adam has its own")
        return value

    @field_validator("resized_crop_scale")
    @classmethod
    def _check_crop_scale(cls, value: list[float] | None):
        if value is not None and not 0 < value[0] <= value[1] <= 1:
            raise ValueError(f"must be [min, max] with 0 < min <= max <= 1, got {value}")
        return value

    @field_validator("resized_crop_ratio")
    @classmethod
    def _check_crop_ratio(cls, value: list[float]):
        if not 0.1 <= value[0] <= value[1] <= 10:
            raise ValueError(f"must be [min, max] with 0.1 <= min <= max <= 10, got {value}")
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

    def _section(self, kind):
        return kind(**{f.name: getattr(self, f.name) for f in fields(kind)})

    @property
    def network(self) -> Network:
        return self._section(Network)

    @property
    def optimization(self) -> Optimization:
        return self._section(Optimization)

    @property
    def augmentation(self) -> Augmentation:
        return self._section(Augmentation)

    @property
    def pipeline(self) -> Pipeline:
        return self._section(Pipeline)

    @property
    def compute(self) -> Compute:
        return self._section(Compute)

    @property
    def stopping(self) -> Stopping:
        return self._section(Stopping)

    @property
    def evaluation(self) -> Evaluation:
        return self._section(Evaluation)

    @property
    def recording(self) -> Recording:
        return self._section(Recording)

    @property
    def exports(self) -> Exports:
        return self._section(Exports)

    def hparams(self) -> dict[str, bool | int | float | str]:
        """Every setting as a TensorBoard HParams value (numbers, strings and booleans; lists
        and nested settings as JSON; unset ones left out)."""
        values: dict[str, bool | int | float | str] = {}
        for key, value in self.model_dump(mode="json").items():
            if isinstance(value, bool | int | float | str):
                values[key] = value
            elif value is not None:
                values[key] = json.dumps(value, sort_keys=True)
        return values


def recipe_values(name: str) -> dict:
    """Every field a recipe decides (:data:`~.recipes.RECIPE_FIELDS`) as that recipe resolves
    it: its own values, and the defaults for the rest."""
    fields = TrainConfig.model_fields
    defaults = {f: fields[f].get_default(call_default_factory=True) for f in RECIPE_FIELDS}
    return {**defaults, **RECIPES[name].values}
