"""What a sweep is asked to do: :class:`SweepRequest`, the body of ``POST /v1/sweeps``, and the
checks that turn every bad space, unknown field and out-of-bounds range into an error naming its
field before the 202 (:func:`check_sweep`).

A sweep trains runs: each trial is an ordinary run whose body is the sweep's ``base`` (a recipe
and any run field) with the trial's values of the ``space`` put in. So a space may only vary a
field of the run's own body (:data:`SWEEPABLE`), and every value it can take must pass the run's
own validation (``runs.config.TrainConfig``): the run's bounds are the space's bounds, checked
by the run's own validator at both ends of a range and on every choice.

Optuna is the search engine (:mod:`.study`): a range becomes a ``FloatDistribution`` or an
``IntDistribution`` (by the run field's type; ``log`` for a log scale), a list of choices a
``CategoricalDistribution``.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_serializer,
    model_validator,
)

from datavolume.layout import DataRoot
from shard_format.schema import DATASET_NAME_PATTERN
from trainer_service.runs.config import TrainConfig
from trainer_service.runs.operations import InvalidRunRequest, check_request

#: A sweep's name: its trials are tagged ``sweep:<name>`` (a run tag has at most 32 characters).
SWEEP_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,25}$"
TAG_PREFIX = "sweep:"
MAX_TRIALS = 1000
MAX_CONCURRENT = 64
MAX_SPACE_FIELDS = 16
MAX_CHOICES = 32
#: Longest time a sweep may give itself, in minutes (30 days).
MAX_MINUTES = 30 * 24 * 60

#: The run fields a sweep may vary: the ones that decide what a run learns (the model's shape,
#: the optimizer and its schedule, the augmentation, the regularization, the seed). Fields that
#: say where or how a run computes, what it records or exports, how it stops, or what it is
#: called stay in ``base``.
SWEEPABLE = (
    "recipe", "width", "epochs", "batch_size", "optimizer", "learning_rate", "momentum",
    "nesterov", "schedule", "warmup_epochs", "decay_factor", "weight_decay",
    "decoupled_weight_decay", "zero_init_residual", "use_ema", "ema_momentum", "flip",
    "crop_padding", "mixup_alpha", "cutmix_alpha", "cutmix_prob", "label_smoothing", "tta_flip",
    "seed",
)  # fmt: skip
#: Fields a sweep sets on its trials itself.
SET_BY_THE_SWEEP = ("dataset", "name")

#: The metric a sweep optimizes -> (the history column, its direction).
METRICS: dict[str, tuple[str, str]] = {
    "val_top1": ("val_accuracy", "maximize"),
    "val_top5": ("val_top5_accuracy", "maximize"),
    "val_loss": ("val_loss", "minimize"),
}

Choice = bool | int | float | str


class Dimension(BaseModel):
    """One field of the space: a range ``{low, high, log}`` (from ``low`` to ``high``, both
    included, on a log scale with ``log``; an int or a float range as the run field is) or a list
    of ``{choices}``."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    low: int | float | None = Field(None, description="A range's smallest value.")
    high: int | float | None = Field(None, description="A range's largest value (above low).")
    log: bool = Field(False, description="Draw the range on a log scale (low above 0).")
    choices: list[Choice] | None = Field(
        None, min_length=1, max_length=MAX_CHOICES, description="The values to choose from."
    )

    @model_validator(mode="after")
    def _a_range_or_choices(self):
        if self.choices is not None:
            if self.low is not None or self.high is not None or self.log:
                raise ValueError("give a range (low, high, log) or choices, not both")
            seen = [(type(v), v) for v in self.choices]
            if len(set(seen)) != len(seen):
                raise ValueError(f"choices repeat: {self.choices}")
            return self
        if self.low is None or self.high is None:
            raise ValueError("give a range (low and high) or choices")
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be less than high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log scale needs low above 0, got {self.low}")
        return self

    @property
    def is_range(self) -> bool:
        return self.choices is None

    @model_serializer(mode="wrap")
    def _as_given(self, handler):
        """A range as ``{low, high, log}``, choices as ``{choices}``."""
        keys = ("low", "high", "log") if self.is_range else ("choices",)
        return {key: value for key, value in handler(self).items() if key in keys}


class SweepRequest(BaseModel):
    """A sweep: trials of ``base`` with the values of ``space``, chosen by Optuna."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    name: str = Field(
        ...,
        pattern=SWEEP_NAME_PATTERN,
        description="The sweep's name (lowercase letters, digits, '-'; at most 26): its trials "
        "are runs named <name>-<trial> and tagged sweep:<name>.",
        examples=["lr-crop"],
    )
    dataset: str = Field(
        ..., pattern=DATASET_NAME_PATTERN, description="The prepared dataset every trial reads."
    )
    base: dict[str, Any] = Field(
        default_factory=dict,
        description="The run body every trial starts from (a recipe and any run field but "
        "dataset and name); the space's values go on top.",
        examples=[{"recipe": "fast", "epochs": 30}],
    )
    space: dict[str, Dimension] = Field(
        ...,
        min_length=1,
        max_length=MAX_SPACE_FIELDS,
        description="Per run field: a range {low, high, log} (float or int, as the field is) or "
        f"{{choices: [...]}}. Fields a sweep may vary: {', '.join(SWEEPABLE)}.",
        examples=[
            {
                "learning_rate": {"low": 0.02, "high": 0.4, "log": True},
                "crop_padding": {"choices": [0, 4, 8]},
            }
        ],
    )
    metric: Literal[tuple(METRICS)] = Field(  # type: ignore[valid-type]
        "val_top1",
        description="What a trial scores: its best val top-1 (default), top-5, or val loss.",
    )
    direction: Literal["maximize", "minimize"] | None = Field(
        None, description="The metric's direction (val_top1/top5: maximize, val_loss: minimize)."
    )
    sampler: Literal["tpe", "random", "grid"] = Field(
        "tpe",
        description="tpe (Optuna's TPESampler, with constant liar for concurrent trials), random, "
        "or grid (every combination of choices once; ranges are not allowed).",
    )
    pruner: Literal["median", "hyperband", "none"] = Field(
        "median",
        description="Stops a trial at an epoch's end when it does worse than the others did "
        "(Optuna's MedianPruner or HyperbandPruner), or never (none).",
    )
    prune_after_epochs: int = Field(
        1,
        ge=0,
        le=10_000,
        description="Epochs a trial trains before it may be pruned (MedianPruner's "
        "n_warmup_steps, HyperbandPruner's min_resource).",
    )
    startup_trials: int = Field(
        4,
        ge=0,
        le=MAX_TRIALS,
        description="Trials drawn at random before TPE models the results, and finished before "
        "the median pruner prunes.",
    )
    max_trials: int = Field(
        16,
        ge=1,
        le=MAX_TRIALS,
        description="Trials to finish (completed or pruned; failed ones are replaced). A grid "
        "tries each combination once, at most this many.",
    )
    max_concurrent: int = Field(
        1,
        ge=1,
        le=MAX_CONCURRENT,
        description="Trials running at once, on every trainer service together.",
    )
    max_time_min: float | None = Field(
        None,
        gt=0,
        le=MAX_MINUTES,
        description="No trial starts after this many minutes (the running ones finish).",
    )
    seed: int = Field(0, ge=0, lt=2**31, description="Seeds the sampler (the trials' own seed "
                      "is the run's seed field).")  # fmt: skip

    @model_validator(mode="after")
    def _direction_fits_the_metric(self):
        natural = METRICS[self.metric][1]
        if self.direction is None:
            self.direction = natural
        elif self.direction != natural:
            raise ValueError(f"{self.metric} is to {natural}, not to {self.direction}")
        return self

    @property
    def history_key(self) -> str:
        """The history column (and Keras log key) of the metric."""
        return METRICS[self.metric][0]

    @property
    def tag(self) -> str:
        return TAG_PREFIX + self.name

    def grid(self) -> dict[str, list[Choice]] | None:
        """Every field's choices, if the space is only choices (what a grid sampler needs)."""
        if any(d.is_range for d in self.space.values()):
            return None
        return {name: list(d.choices or ()) for name, d in self.space.items()}

    def trials_wanted(self) -> int:
        """``max_trials``, or fewer for a grid with fewer combinations."""
        grid = self.grid()
        if self.sampler != "grid" or grid is None:
            return self.max_trials
        return min(self.max_trials, math.prod(len(c) for c in grid.values()))

    def run_body(self, params: dict[str, Any], number: int) -> dict[str, Any]:
        """The body of trial ``number``'s run: the base, the trial's values, its name and tags."""
        base = dict(self.base)
        tags = [*base.pop("tags", []), self.tag]
        return {**base, **params, "dataset": self.dataset, "name": f"{self.name}-{number}",
                "tags": tags}  # fmt: skip


def run_errors(body: dict[str, Any], root: DataRoot) -> list[tuple[str, str]]:
    """Why ``body`` would not make a run: the run validator's errors and the checks against the
    volume a run gets before its 202 (``runs.operations.check_request``), as (field, message)
    with the field as a run body's (``epochs``, ``batch_size``)."""
    try:
        config = TrainConfig.model_validate(body)
    except ValidationError as exc:
        return [(".".join(map(str, e["loc"])), e["msg"]) for e in exc.errors()]
    try:
        check_request(root, config)
    except InvalidRunRequest as exc:
        return [(exc.field.removeprefix("body."), exc.message)]
    return []


def _field_kind(name: str) -> str:
    """ "int", "float" or "choices" (bools, names, widths): what a range of ``name`` draws."""
    annotation = TrainConfig.model_fields[name].annotation
    if annotation is int:
        return "int"
    if annotation is float:
        return "float"
    return "choices"


def check_sweep(request: SweepRequest, root: DataRoot) -> list[tuple[str, str]]:
    """Every reason the sweep cannot run as asked, as ``(field, message)`` with fields like
    ``body.space.learning_rate.high`` (none: it can)."""
    errors: list[tuple[str, str]] = []
    base = request.base
    for key in SET_BY_THE_SWEEP:
        if key in base:
            errors.append((f"body.base.{key}", f"{key} is set by the sweep, not in base"))
    body = {**base, "dataset": request.dataset}
    if not errors:
        errors = [(f"body.{field}" if field == "dataset" else f"body.base.{field}", message)
                  for field, message in run_errors(body, root)]  # fmt: skip
    if errors:
        return errors
    for name, dimension in request.space.items():
        where = f"body.space.{name}"
        if name not in TrainConfig.model_fields:
            errors.append((where, f"{name!r} is not a run field"))
        elif name not in SWEEPABLE:
            errors.append((where, f"a sweep may not vary {name!r}; it may vary "
                                  f"{', '.join(SWEEPABLE)}"))  # fmt: skip
        elif name in base:
            errors.append((where, f"{name!r} is set in base too: give it in one place"))
        elif dimension.is_range and _field_kind(name) == "choices":
            errors.append((where, f"{name!r} takes no range: give its choices"))
        else:
            errors.extend(_value_errors(name, dimension, body, root))
    if request.sampler == "grid" and request.grid() is None:
        ranges = [n for n, d in request.space.items() if d.is_range]
        errors.append((f"body.space.{ranges[0]}", "a grid sweep takes choices only, not ranges"))
    return errors


def _value_errors(name: str, dimension: Dimension, body: dict[str, Any], root: DataRoot):
    """Each end of a range and each choice, as a run of the base with that value would see it."""
    where = f"body.space.{name}"
    if dimension.is_range:
        values = {"low": dimension.low, "high": dimension.high}
    else:
        values = {f"choices[{i}]": v for i, v in enumerate(dimension.choices or ())}
    for part, value in values.items():
        if dimension.is_range and _field_kind(name) == "int" and not isinstance(value, int):
            yield f"{where}.{part}", f"{name} is an int field, got {value!r}"
            continue
        for field, message in run_errors({**body, name: value}, root):
            about = "" if field.split(".")[0] == name else f"with it, {field}: "
            yield f"{where}.{part}", about + message
