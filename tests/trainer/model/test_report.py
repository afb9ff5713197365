"""model_report and the resnet-report CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trainer_service.model.report import REPORT_KEYS, format_report, main, model_report

FULL = {"trainable_params": 3_121_352, "non_trainable_params": 16_448, "total_params": 3_137_800}
HALF = {"trainable_params": 836_232, "non_trainable_params": 8_224, "total_params": 844_456}


def test_full_report_without_memory():
    report = model_report(measure_memory=False)
    assert tuple(report) == REPORT_KEYS
    assert {k: report[k] for k in FULL} == FULL
    assert report["filters"] == 64
    assert report["levels"] == [4, 6, 3, 2]
    assert report["classes"] == 200
    assert report["input_shape"] == [64, 64, 3]
    assert report["macs_per_image"] == 405_741_568
    assert round(report["gmacs_per_image"], 4) == 0.4057
    assert report["gflops_per_image_forward"] == pytest.approx(2 * 405_741_568 / 1e9)
    assert report["peak_memory_bytes"] is None
    assert report["memory_method"] == "not measured"
    assert json.loads(json.dumps(report)) == report  # JSON-ready for the HTTP endpoint


def test_half_preset_by_name():
    report = model_report("half", measure_memory=False)
    assert report["filters"] == 32
    assert {k: report[k] for k in HALF} == HALF
    assert round(report["gmacs_per_image"], 4) == 0.1033


def test_memory_of_one_training_step_is_measured():
    # Width >= 16: TF 2.21's oneDNN CPU kernels corrupt the heap in the gradient of a 1x1/2
    # conv with fewer than 16 input channels at 64x64 (a TF bug; TF_ENABLE_ONEDNN_OPTS=0 avoids it).
    report = model_report(16, (1,), classes=10, batch_size=4)
    assert isinstance(report["peak_memory_bytes"], int)
    assert report["peak_memory_bytes"] > 0
    assert report["memory_method"] != "not measured"
    assert report["batch_size"] == 4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"filters": 30}, "got 30"),
        ({"filters": "quarter"}, "got 'quarter'"),
        ({"levels": []}, r"got \[\]"),
        ({"batch_size": 0}, "batch_size must be a positive int, got 0"),
    ],
)
def test_invalid_report_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        model_report(measure_memory=False, **kwargs)


def test_cli_prints_a_table(capsys):
    assert main(["--width", "half", "--no-memory"]) == 0
    out = capsys.readouterr().out
    assert "844,456" in out
    assert "836,232" in out
    assert "0.1033 G" in out
    assert "not measured" in out
    assert format_report(model_report("half", measure_memory=False)) == out.rstrip("\n")


def test_cli_json_with_custom_levels(capsys):
    assert (
        main(["--width", "16", "--levels", "1,0", "--classes", "7", "--no-memory", "--json"]) == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["filters"] == 16
    assert report["levels"] == [1, 0]
    assert report["classes"] == 7
    assert report["total_params"] > 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--width", "30"], "got 30"),
        (["--width", "quarter"], "got 'quarter'"),
        (["--levels", "4,x"], "got '4,x'"),
    ],
)
def test_cli_rejects_bad_arguments(capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--no-memory"])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_console_script_is_installed():
    script = Path(sys.executable).with_name("resnet-report")
    if not script.exists():
        pytest.skip(f"{script} is not installed (pip install -e services/trainer)")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [str(script), "--width", "half", "--no-memory", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["total_params"] == 844_456
