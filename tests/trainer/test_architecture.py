"""The closed-form size and cost equal Keras's counts; the bounds; none of it imports Keras."""

from __future__ import annotations

import subprocess
import sys

import keras
import pytest

from trainer_service.architecture import (
    MAX_LEVELS,
    MAX_PARAMETERS,
    MAX_WIDTH,
    check_levels,
    check_shape,
    resolve_width,
    size,
)
from trainer_service.model.report import count_macs
from trainer_service.model.resnet import build_resnet


@pytest.mark.parametrize(
    ("filters", "levels", "classes"),
    [(64, (4, 6, 3, 2), 200), (32, (4, 6, 3, 2), 200), (8, (1,), 4), (12, (0, 2, 1, 0, 1), 10),
     (8, (1, 1, 1, 1, 1, 1), 7), (4, (0,), 1)],
)  # fmt: skip
def test_closed_form_equals_what_keras_counts(filters, levels, classes):
    model = build_resnet(classes, filters, levels)
    found = size(filters, levels, classes)
    trainable = sum(int(keras.ops.size(w)) for w in model.trainable_weights)
    non_trainable = sum(int(keras.ops.size(w)) for w in model.non_trainable_weights)
    assert (found.trainable_params, found.non_trainable_params) == (trainable, non_trainable)
    assert found.total_params == model.count_params()
    assert found.macs_per_image == count_macs(model)


def test_the_documented_full_and_half_sizes():
    assert size(64, (4, 6, 3, 2)).total_params == 3_137_800
    assert size(32, (4, 6, 3, 2)).total_params == 844_456


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: resolve_width(MAX_WIDTH + 4), f"at most {MAX_WIDTH}"),
        (lambda: resolve_width(1_000_000), f"at most {MAX_WIDTH}"),
        (lambda: check_levels([1] * (MAX_LEVELS + 1)), f"at most {MAX_LEVELS} levels"),
        (lambda: check_levels([1_000_000_000]), "bottlenecks per level"),
        (lambda: check_levels([100] * 1000), "levels"),
        (lambda: check_shape(512, (4, 6, 3, 2)), f"at most {MAX_PARAMETERS:,}"),
    ],
)
def test_bounds_refuse_with_the_received_value(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_validating_a_config_and_the_report_never_import_keras():
    code = (
        "import sys\n"
        "from trainer_service.training.config import TrainConfig\n"
        "from trainer_service.api.report import model_report\n"
        "TrainConfig(dataset='d', width='half', levels=[4, 6, 3, 2])\n"
        "assert model_report('full', '4,6,3,2', 200)['total_params'] == 3_137_800\n"
        "print(sorted(m for m in ('keras', 'tensorflow', 'jax') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
