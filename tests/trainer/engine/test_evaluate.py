"""The evaluation of a checkpoint: test predictions in the cs231n format and the val scores
(function and command)."""

from __future__ import annotations

import json
import re

import pytest

from datavolume import DataRoot
from datavolume.files import atomic_write_json
from datavolume.runs import RunFolder
from shard_format.metadata import load_metadata
from tests.trainer.support import TOY, TOY_CLASSES, TOY_TEST_IMAGES, TOY_VAL_PER_CLASS, tiny_config
from trainer_service.engine import evaluate
from trainer_service.engine import train as engine
from trainer_service.runs.config import Evaluation

LINE = re.compile(r"^test_(\d+)\.JPEG (n\d{8})$")


@pytest.fixture
def run_with_checkpoint(data_root):
    """A run folder with config.json and a (freshly initialised) best.keras checkpoint."""
    config = tiny_config()
    paths = DataRoot(data_root).run("abc123")
    paths.make()
    atomic_write_json(paths.config, config.model_dump(mode="json"))
    model = engine.build_model(config, TOY_CLASSES)
    model.compile(optimizer="sgd", loss=evaluate.loss(), metrics=evaluate.metrics())
    model.save(paths.best)
    return paths, model


def test_predictions_file_format(data_root, run_with_checkpoint, tmp_path):
    _, model = run_with_checkpoint
    folder = DataRoot(data_root).dataset(TOY)
    metadata = load_metadata(folder)
    out = RunFolder(tmp_path / "out")
    out.root.mkdir()
    settings = Evaluation(batch_size=3, tta_flip=False, limit_val_steps=None)
    evaluation = evaluate.evaluate_checkpoint(
        model, folder, metadata, out.root, settings, checkpoint={"checkpoint": "x.keras"}
    )
    lines = out.predictions.read_text().splitlines()
    assert len(lines) == TOY_TEST_IMAGES == evaluation["test_predictions"]
    matches = [LINE.match(line) for line in lines]
    assert all(matches), lines
    assert [int(m[1]) for m in matches] == list(range(TOY_TEST_IMAGES))  # one per image, in order
    assert {m[2] for m in matches} <= set(metadata.wnids())
    assert evaluation["val_images"] == TOY_CLASSES * TOY_VAL_PER_CLASS
    assert 0 <= evaluation["val_accuracy"] <= evaluation["val_top5_accuracy"] <= 1
    assert json.loads(out.evaluation.read_text()) == evaluation
    # per class: the same images, so their per-class hits add up to the overall top-1
    classes = evaluation["classes"]
    rows = classes["per_class"]
    assert [r["wnid"] for r in rows] == metadata.wnids()
    assert sum(r["images"] for r in rows) == evaluation["val_images"]
    hits = sum(r["top1"] * r["images"] for r in rows)
    assert hits / evaluation["val_images"] == pytest.approx(evaluation["val_accuracy"], abs=1e-6)
    assert classes["files"] == ["confusion.csv", "per_class.png"]
    assert out.confusion.is_file() and out.per_class_png.is_file()


def test_cli_for_a_runs_checkpoint(data_root, run_with_checkpoint, capsys):
    paths, _ = run_with_checkpoint
    assert (
        evaluate.main(["--data-root", str(data_root), "--run", "abc123", "--checkpoint", "best"])
        == 0
    )
    printed = json.loads(capsys.readouterr().out)
    assert printed["checkpoint"] == str(paths.best)
    assert len(paths.predictions.read_text().splitlines()) == TOY_TEST_IMAGES
    assert json.loads(paths.evaluation.read_text())["val_accuracy"] == printed["val_accuracy"]


def test_cli_rejects_a_missing_checkpoint(data_root, run_with_checkpoint):
    with pytest.raises(SystemExit):
        evaluate.main(["--data-root", str(data_root), "--run", "abc123", "--checkpoint", "7"])
