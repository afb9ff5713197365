"""The closed-form size and cost equal Keras's counts; the bounds; none of it imports Keras."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import keras
import pytest

from bench.model_cost import count_macs
from trainer_service.model.architecture import (
    MAX_LEVELS,
    MAX_PARAMETERS,
    MAX_WIDTH,
    check_levels,
    check_shape,
    format_report,
    main,
    report,
    resolve_width,
    size,
)
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
        "from trainer_service.runs.config import TrainConfig\n"
        "from trainer_service.api.report import model_report\n"
        "TrainConfig(dataset='d', width='half', levels=[4, 6, 3, 2])\n"
        "assert model_report('full', '4,6,3,2', 200)['total_params'] == 3_137_800\n"
        "print(sorted(m for m in ('keras', 'tensorflow', 'jax') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


FULL = {"trainable_params": 3_121_352, "non_trainable_params": 16_448, "total_params": 3_137_800}
HALF = {"trainable_params": 836_232, "non_trainable_params": 8_224, "total_params": 844_456}


def test_the_report_of_the_full_and_half_models():
    full = report(64, (4, 6, 3, 2))
    assert {k: full[k] for k in FULL} == FULL
    assert (full["filters"], full["levels"], full["classes"]) == (64, [4, 6, 3, 2], 200)
    assert full["input_shape"] == [64, 64, 3]
    assert full["macs_per_image"] == 405_741_568
    assert round(full["gmacs_per_image"], 4) == 0.4057
    assert full["gflops_per_image_forward"] == pytest.approx(2 * 405_741_568 / 1e9)
    half = report(resolve_width("half"), (4, 6, 3, 2))
    assert {k: half[k] for k in HALF} == HALF
    assert round(half["gmacs_per_image"], 4) == 0.1033


def test_cli_prints_a_table(capsys):
    assert main(["--width", "half"]) == 0
    out = capsys.readouterr().out
    assert "844,456" in out
    assert "836,232" in out
    assert "0.1033 G" in out
    assert format_report(report(32, (4, 6, 3, 2))) == out.rstrip("\n")


def test_cli_json_with_custom_levels(capsys):
    assert main(["--width", "16", "--levels", "1,0", "--classes", "7", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert (found["filters"], found["levels"], found["classes"]) == (16, [1, 0], 7)
    assert found == report(16, (1, 0), 7)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--width", "30"], "got 30"),
        (["--width", "quarter"], "got 'quarter'"),
        (["--levels", "4,x"], "got '4,x'"),
        (["--classes", "0"], "classes must be a positive int, got 0"),
    ],
)
def test_cli_rejects_bad_arguments(capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_console_script_is_installed():
    script = Path(sys.executable).with_name("resnet-report")
    assert script.exists(), f"{script} is not installed (./scripts/setup.sh installs it)"
    done = subprocess.run(
        [str(script), "--width", "half", "--json"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["total_params"] == 844_456
