"""TrainConfig: the homework defaults, presets, and validation errors located at their field."""

import pytest
from pydantic import ValidationError

from trainer_service.runs.config import DEFAULT_WEIGHT_DECAY, TrainConfig, recipe_values
from trainer_service.runs.recipes import RECIPE_FIELDS, RECIPES


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
        ({"recipe": "turbo"}, "recipe"),
        ({"recipe": ["fast"]}, "recipe"),
        ({"schedule": "onecycle"}, "schedule"),
        ({"flip": "yes"}, "flip"),
        ({"crop_padding": -1}, "crop_padding"),
        ({"crop_padding": 33}, "crop_padding"),
        ({"crop_padding": 4.0}, "crop_padding"),
        ({"resized_crop_scale": [0.0, 1.0]}, "resized_crop_scale"),
        ({"resized_crop_scale": [0.9, 0.5]}, "resized_crop_scale"),
        ({"resized_crop_scale": [0.5]}, "resized_crop_scale"),
        ({"resized_crop_scale": [0.5, 1.2]}, "resized_crop_scale"),
        ({"resized_crop_ratio": [2.0, 1.0]}, "resized_crop_ratio"),
        ({"resized_crop_ratio": [0.0, 1.0]}, "resized_crop_ratio"),
        ({"mixup_alpha": -0.2}, "mixup_alpha"),
        ({"mixup_alpha": float("inf")}, "mixup_alpha"),
        ({"cutmix_alpha": 11.0}, "cutmix_alpha"),
        ({"cutmix_prob": 1.5}, "cutmix_prob"),
        ({"label_smoothing": 0.6}, "label_smoothing"),
        ({"label_smoothing": -0.1}, "label_smoothing"),
        ({"ema_momentum": 1.0}, "ema_momentum"),
        ({"use_ema": 1}, "use_ema"),
        ({"decoupled_weight_decay": -1e-3}, "decoupled_weight_decay"),
        ({"warmup_epochs": 2.0, "warmup_steps": 100}, "warmup_steps"),
        ({"warmup_steps": 0}, "warmup_steps"),
        ({"optimizer": "adam", "nesterov": True}, "nesterov"),
        ({"tta_flip": "true"}, "tta_flip"),
        ({"zero_init_residual": None}, "zero_init_residual"),
        ({"recipe": "fast", "epochs": 3}, "warmup_epochs"),
    ],
)
def test_invalid_values_name_their_field(values, field):
    fields = error_fields(**values)
    assert fields and all(loc[0] == field for loc in fields), fields


def test_json_round_trip():
    config = TrainConfig(dataset="toy", width="half", schedule="cosine", warmup_epochs=2.5)
    assert TrainConfig.model_validate(config.model_dump(mode="json")) == config


def test_a_request_with_only_the_dataset_trains_the_homework_recipe():
    config = TrainConfig(dataset="toy")
    assert config.recipe == "homework"
    assert config.flip is True  # the homework's flip, always on unless turned off
    assert (config.crop_padding, config.resized_crop_scale) == (0, None)
    assert (config.mixup_alpha, config.cutmix_alpha, config.label_smoothing) == (0, 0, 0)
    assert not (config.nesterov or config.use_ema or config.zero_init_residual or config.tta_flip)
    assert (config.decoupled_weight_decay, config.warmup_steps) == (0, None)
    assert TrainConfig(dataset="toy", recipe="homework") == config


def test_the_fast_recipe_fills_what_the_request_leaves_out():
    config = TrainConfig(dataset="toy", recipe="fast")
    for field, value in RECIPES["fast"].values.items():
        assert getattr(config, field) == value, field
    assert config.weight_decay == DEFAULT_WEIGHT_DECAY  # not set by the recipe: the default


def test_a_field_the_request_sets_wins_over_the_recipe():
    config = TrainConfig(dataset="toy", recipe="fast", epochs=10, crop_padding=0, tta_flip=False)
    assert (config.epochs, config.crop_padding, config.tta_flip) == (10, 0, False)
    assert config.batch_size == 512 and config.label_smoothing == 0.1  # still the recipe's


@pytest.mark.parametrize("name", RECIPES)
def test_a_run_is_reproducible_from_its_resolved_config(name):
    """config.json holds every value resolved: posting it again gives the same run."""
    config = TrainConfig(dataset="toy", recipe=name, width="half")
    saved = config.model_dump(mode="json")
    assert TrainConfig.model_validate(saved) == config
    assert saved["recipe"] == name


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_values_are_what_a_run_with_the_recipe_resolves(name):
    values = recipe_values(name)
    assert tuple(values) == RECIPE_FIELDS
    resolved = TrainConfig(dataset="toy", recipe=name).model_dump()
    assert values == {field: resolved[field] for field in RECIPE_FIELDS}


def test_every_recipe_field_is_a_config_field():
    assert set(RECIPE_FIELDS) <= set(TrainConfig.model_fields)
    for recipe in RECIPES.values():
        assert set(recipe.values) <= set(RECIPE_FIELDS), recipe.name


def test_the_new_fields_are_documented_in_the_schema():
    properties = TrainConfig.model_json_schema()["properties"]
    for field in (*RECIPE_FIELDS, "recipe"):
        assert properties[field].get("description"), field
