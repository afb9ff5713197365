"""TrainConfig: the homework defaults, presets, and validation errors located at their field."""

import pytest
from pydantic import ValidationError

from trainer_service.runs.config import DEFAULT_WEIGHT_DECAY, TrainConfig


def error_fields(**values) -> list[tuple]:
    with pytest.raises(ValidationError) as info:
        TrainConfig(**{"dataset": "toy", **values})
    return [e["loc"] for e in info.value.errors()]


def test_defaults_are_the_homeworks_except_weight_decay():
    config = TrainConfig(dataset="tiny-imagenet-200")
    assert (config.batch_size, config.epochs) == (128, 72)
    assert (config.optimizer, config.learning_rate, config.momentum) == ("sgd", 0.01, 0.9)
    assert (config.schedule, config.decay_epochs, config.decay_factor) == ("step", [64], 0.1)
    assert config.levels == [4, 6, 3, 2] and config.filters == 64
    assert config.weight_decay == DEFAULT_WEIGHT_DECAY == 2.5e-4
    assert config.keep_checkpoints == 5 and config.warmup_epochs == 0
    assert config.mixed_precision == "auto" and config.jit_compile == "auto"


@pytest.mark.parametrize(("width", "filters"), [("full", 64), ("half", 32), (8, 8)])
def test_width_presets_and_ints(width, filters):
    assert TrainConfig(dataset="toy", width=width).filters == filters


@pytest.mark.parametrize(
    ("field", "value"),
    [("width", "16"), ("seed", False), ("levels", [False]), ("epochs", "3"),
     ("learning_rate", float("nan")), ("batch_size", 8.0)],
)  # fmt: skip
def test_strings_booleans_and_nan_are_not_numbers(field, value):
    with pytest.raises(ValidationError) as caught:
        TrainConfig(dataset="toy", **{field: value})
    assert caught.value.errors()[0]["loc"][0] == field


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"width": 6}, "width"),
        ({"width": "quarter"}, "width"),
        ({"levels": []}, "levels"),
        ({"levels": [1, -1]}, "levels"),
        ({"batch_size": 0}, "batch_size"),
        ({"epochs": 0}, "epochs"),
        ({"learning_rate": -0.1}, "learning_rate"),
        ({"momentum": 1.0}, "momentum"),
        ({"optimizer": "rmsprop"}, "optimizer"),
        ({"schedule": "poly"}, "schedule"),
        ({"decay_epochs": [64, 32]}, "decay_epochs"),
        ({"epochs": 5, "warmup_epochs": 6}, "warmup_epochs"),
        ({"mixed_precision": "fp8"}, "mixed_precision"),
        ({"steps_per_execution": 0}, "steps_per_execution"),
        ({"keep_checkpoints": 0}, "keep_checkpoints"),
        ({"init_checkpoint": "/etc/passwd.keras"}, "init_checkpoint"),
        ({"init_checkpoint": "../outside/best.keras"}, "init_checkpoint"),
        ({"init_checkpoint": "runs/x/checkpoints/best.h5"}, "init_checkpoint"),
        ({"dataset": "../etc"}, "dataset"),
        ({"weight_decay": -1e-4}, "weight_decay"),
        ({"unknown": 1}, "unknown"),
    ],
)
def test_invalid_values_name_their_field(values, field):
    fields = error_fields(**values)
    assert fields and all(loc[0] == field for loc in fields), fields


def test_json_round_trip():
    config = TrainConfig(dataset="toy", width="half", schedule="cosine", warmup_epochs=2.5)
    assert TrainConfig.model_validate(config.model_dump(mode="json")) == config
