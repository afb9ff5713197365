"""``tin`` as a user runs it (the installed console script): plain lines when stdout is a pipe,
live bars on a pseudo-terminal, the exit statuses, Ctrl-C detaching, and complete help."""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer

from tests.client.conftest import DATASET, Live
from tin_client.cli import app

pytestmark = pytest.mark.slow
TIN = shutil.which("tin") or str(Path(sys.executable).parent / "tin")
TINY = ["--width", "8", "--levels", "1", "--batch-size", "8", "--set", "export_savedmodel=false",
        "--set", "export_onnx=false"]  # fmt: skip


def tin(live: Live, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, **live.cli_env()}
    return subprocess.run([TIN, *args], env=env, capture_output=True, text=True, timeout=timeout)


def _interruptible() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Terminal:
    """``tin`` on a pseudo-terminal, 120 columns, its screen output collected."""

    def __init__(self, live: Live, *args: str):
        self.master, slave = pty.openpty()
        env = {**os.environ, **live.cli_env(), "TERM": "xterm-256color", "COLUMNS": "120"}
        env.pop("NO_COLOR", None)
        self.process = subprocess.Popen(
            [TIN, *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            close_fds=True,
            # As at a terminal: Ctrl-C interrupts, even when these tests run under a shell that
            # started them in the background (which ignores SIGINT, and children inherit that).
            preexec_fn=_interruptible,
        )
        os.close(slave)
        self.output = ""

    def read_until(self, pattern: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if re.search(pattern, self.output):
                return True
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if ready:
                try:
                    self.output += os.read(self.master, 65536).decode(errors="replace")
                except OSError:  # the program closed the terminal
                    return bool(re.search(pattern, self.output))
        return False

    def wait(self, timeout: float) -> int:
        code = self.process.wait(timeout)
        while select.select([self.master], [], [], 0.5)[0]:  # what it wrote before exiting
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                break
            if not chunk:
                break
            self.output += chunk.decode(errors="replace")
        os.close(self.master)
        return code


def test_prepare_and_train_in_plain_mode(live: Live):
    synthetic = ["--synthetic", "--classes", "3", "--train-per-class", "8", "--val-per-class", "2",
                 "--test-images", "2"]  # fmt: skip
    done = tin(live, "prepare", *synthetic, "--name", "syn-plain", "--wait")
    assert done.returncode == 0, done.stderr
    assert re.search(r"^\[dataset\] succeeded", done.stdout, re.M)
    assert "dataset syn-plain ready" in done.stdout
    assert "\x1b[" not in done.stdout  # no terminal control sequences in a pipe

    done = tin(live, "train", DATASET, "--epochs", "1", *TINY, "--name", "plain run",
               "--tag", "smoke", "--tag", "cli", "--follow")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert re.search(r"^\[trainer\] running +epoch 1/1", done.stdout, re.M)
    assert re.search(r"^\[trainer\] succeeded .*val_accuracy=", done.stdout, re.M)
    run_id = re.search(r"^run (\w+) ", done.stdout, re.M).group(1)

    history = tin(live, "history", run_id, "--csv")
    assert history.returncode == 0 and history.stdout.startswith("epoch,")
    table = tin(live, "history", run_id)
    assert re.search(r"^\s*1\s", table.stdout, re.M), table.stdout
    assert run_id in tin(live, "runs").stdout
    tagged = tin(live, "runs", "--tag", "smoke").stdout
    assert re.search(rf"^{run_id}\s+plain run\s+smoke,cli\s+succeeded", tagged, re.M), tagged
    assert run_id not in tin(live, "runs", "--tag", "other").stdout
    scores = tin(live, "evaluation", run_id)
    assert scores.returncode == 0, scores.stderr
    assert "val top-1" in scores.stdout and "worst classes:" in scores.stdout
    assert len(json.loads(tin(live, "evaluation", run_id, "--json").stdout)["classes"][
        "per_class"]) == 3  # fmt: skip
    assert DATASET in tin(live, "datasets").stdout
    status = tin(live, "status", run_id)
    assert status.returncode == 0 and '"state": "succeeded"' in status.stdout
    assert "epoch 1/1" in tin(live, "logs", run_id).stdout
    assert '"total_params"' in tin(live, "report", "--width", "8", "--levels", "1").stdout


def test_recipes_and_a_run_that_names_one(live: Live):
    listed = tin(live, "recipes")
    assert listed.returncode == 0, listed.stderr
    assert "homework (default)" in listed.stdout and "fast" in listed.stdout
    assert re.search(r"^\s*crop_padding\s+0\s+4\s*$", listed.stdout, re.M), listed.stdout
    answer = json.loads(tin(live, "recipes", "--json").stdout)
    assert [item["name"] for item in answer["items"]] == ["homework", "fast"]

    done = tin(live, "train", DATASET, "--recipe", "fast", "--epochs", "1", *TINY,
               "--set", "warmup_epochs=0", "--follow")  # fmt: skip
    assert done.returncode == 0, done.stderr
    run_id = re.search(r"^run (\w+) ", done.stdout, re.M).group(1)
    with live.trainer() as trainer:
        request = trainer.get(run_id)["request"]
    assert request["recipe"] == "fast" and request["tta_flip"] is True
    assert (request["epochs"], request["batch_size"]) == (1, 8)  # what the command line set

    # Compared with the run of another recipe: the settings the recipes set differ.
    other = tin(live, "train", DATASET, "--epochs", "1", *TINY, "--follow")
    other_id = re.search(r"^run (\w+) ", other.stdout, re.M).group(1)
    plot = live.data_root / "compare.png"
    done = tin(live, "compare", run_id, other_id, "--csv", "--plot", str(plot))
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert [r["id"] for r in rows] == [run_id, other_id]
    assert [r["recipe"] for r in rows] == ["fast", "homework"] and "dataset" not in rows[0]
    assert all(0 <= float(r["best_val_accuracy"]) <= 1 for r in rows)
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_failures_exit_non_zero_with_the_reason(live: Live):
    refused = tin(live, "train", DATASET, "--width", "huge")
    assert refused.returncode == 2
    assert "422" in refused.stderr and "invalid fields: body.width" in refused.stderr

    env = {**os.environ, **live.cli_env(), "API_TOKEN": ""}
    no_token = subprocess.run([TIN, "datasets"], env=env, capture_output=True, text=True)
    assert no_token.returncode == 2 and "401" in no_token.stderr

    (live.data_root / "raw").mkdir(exist_ok=True)
    (live.data_root / "raw" / "junk.zip").write_bytes(b"junk")
    failed = tin(live, "prepare", "--zip", "raw/junk.zip", "--name", "junk", "--wait")
    assert failed.returncode == 1
    assert re.search(r"\w+ failed \(\w+\): .+", failed.stderr), failed.stderr

    unknown = tin(live, "status", "0123456789ab")
    assert unknown.returncode == 2 and "no run or prepare job" in unknown.stderr


def test_following_on_a_terminal_shows_bars_and_ctrl_c_detaches(live: Live):
    term = Terminal(live, "train", DATASET, "--epochs", "40", *TINY, "--follow")
    # The step bar appears once the first epoch runs, and a kept line per finished epoch.
    assert term.read_until(r"epoch 1: loss=", 300), term.output[-2000:]
    assert "epochs" in term.output and "steps" in term.output
    assert "━" in term.output  # Rich's bar glyph
    run_id = re.search(r"run (\w+) (queued|running)", term.output).group(1)
    term.process.send_signal(signal.SIGINT)
    assert term.wait(30) == 130
    assert f"Reattach: tin status {run_id} --follow" in term.output
    # Detaching cancelled nothing: the run goes on (until `tin cancel` stops it).
    with live.trainer() as trainer:
        assert trainer.get(run_id)["state"] == "running"
    cancelled = tin(live, "cancel", run_id)
    assert cancelled.returncode == 0 and run_id in cancelled.stdout
    with live.trainer() as trainer:
        assert trainer.wait(run_id, timeout=300)["state"] == "cancelled"
        assert trainer.get(run_id)["checkpoints"]  # it saved one before stopping


def test_every_command_has_complete_help(live: Live):
    top = tin(live, "--help")
    assert top.returncode == 0
    group = typer.main.get_command(app)
    assert {"prepare", "train", "datasets", "runs", "status", "logs", "cancel", "resume",
            "history", "recipes", "report"} <= set(group.commands)  # fmt: skip
    for name, command in group.commands.items():
        assert name in top.stdout
        help_text = tin(live, name, "--help")
        assert help_text.returncode == 0, name
        flat = " ".join(help_text.stdout.split())
        assert command.help and command.help.split("\n")[0].strip() in flat, name
        for param in command.params:
            # every option and argument is shown and says what it is for
            assert param.help, f"tin {name}: {param.name} has no help"
            shown = param.opts[0] if param.param_type_name == "option" else param.name
            assert shown in help_text.stdout, f"tin {name} --help lacks {shown}"


def test_a_sweep_from_the_command_line(live: Live, tmp_path: Path):
    run = ("width=8", "levels=[1]", "batch_size=8", "epochs=1", "export_savedmodel=false",
           "export_onnx=false")  # fmt: skip
    settings = [f"--set={setting}" for setting in run]
    space = ["--space", "learning_rate=0.01:0.1:log", "--space", "flip=true,false"]
    search = ["--sampler", "random", "--pruner", "none", "--max-trials", "2"]
    done = tin(live, "sweep", "create", "cli-sweep", DATASET, *space, *settings, *search,
               "--follow")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "sweep cli-sweep running: 2 trials of syn-client, val_top1 (maximize)" in done.stdout
    assert re.search(r"^best: trial \d \(run \w+\), val_top1 [\d.]+: \{", done.stdout, re.M)
    assert "\x1b[" not in done.stdout and "2/2 trials finished" in done.stdout

    status = json.loads(tin(live, "sweep", "status", "cli-sweep", "--json").stdout)
    assert status["state"] == "succeeded" and status["request"]["space"] == {
        "learning_rate": {"low": 0.01, "high": 0.1, "log": True},
        "flip": {"choices": [True, False]},
    }
    assert {t["state"] for t in status["trials"]} == {"complete"}
    plot = tmp_path / "sweep.png"
    shown = tin(live, "sweep", "status", "cli-sweep", "--plot", str(plot))
    assert shown.returncode == 0 and plot.read_bytes().startswith(b"\x89PNG")
    assert re.search(r"^cli-sweep\s+succeeded\s+syn-client\s+2/2", tin(live, "sweep", "list")
                     .stdout, re.M)  # fmt: skip
    ended = tin(live, "sweep", "stop", "cli-sweep")
    assert ended.returncode == 2 and "is succeeded" in ended.stderr

    bad = tin(live, "sweep", "create", "bad", DATASET, "--space", "nope=1,2", *settings)
    assert bad.returncode == 2 and "invalid fields: body.space.nope" in bad.stderr
    odd = tin(live, "sweep", "create", "bad", DATASET, "--space", "learning_rate=0.1:1:lin")
    assert odd.returncode == 2 and "LOW:HIGH:log" in odd.stderr
