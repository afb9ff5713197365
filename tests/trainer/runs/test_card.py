"""The model card is written when a run finishes training, and again when a resumed run does."""

from __future__ import annotations

import json
from pathlib import Path

from datavolume.runs import RunFolder
from jobkit.context import LocalContext
from tests.trainer.support import run_to_end, tiny_config


def test_a_resumed_run_rewrites_its_card(data_root: Path):
    run = RunFolder(data_root / "runs" / "card")
    run_to_end(tiny_config(epochs=1), run.root, data_root, LocalContext())
    first = json.loads(run.card_json.read_text())
    assert first["results"]["epochs_completed"] == 1 and first["training"]["epochs"] == 1
    assert first["exports"] == {"keras": "model.keras", "savedmodel": None, "onnx": None}
    assert "Files: `model.keras` (" in run.card_markdown.read_text()

    # The same run asked for a second epoch resumes from its checkpoint and ends again.
    result = run_to_end(tiny_config(epochs=2), run.root, data_root, LocalContext())
    assert result["resumed_from"]["epoch"] == 1
    second = json.loads(run.card_json.read_text())
    assert second["results"]["epochs_completed"] == 2 and second["training"]["epochs"] == 2
    history = json.loads(run.history_json.read_text())
    assert second["results"]["final"] == {
        "epoch": 2,
        **{k: history[1][k] for k in ("val_accuracy", "val_top5_accuracy", "val_loss")},
    }
    assert "| final epoch | 2 |" in run.card_markdown.read_text()


def test_a_stopped_run_writes_no_card(data_root: Path):
    run = RunFolder(data_root / "runs" / "stopped")

    class StopAtTheFirstBatch(LocalContext):
        def progress(self, done, total=None):
            self.request_stop()

    result = run_to_end(tiny_config(epochs=2), run.root, data_root, StopAtTheFirstBatch())
    assert result["stopped"] is True
    assert not run.card_json.exists() and not run.card_markdown.exists()
