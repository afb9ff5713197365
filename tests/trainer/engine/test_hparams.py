"""The run's settings and best scores in TensorBoard's HParams dashboard, read back with
TensorBoard's own event reader and the plugin's own protobufs."""

from __future__ import annotations

import json

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata as hparams_metadata
from tensorboard.util import tensor_util

from datavolume.runs import RunFolder
from jobkit.context import LocalContext
from tests.trainer.support import tiny_config
from trainer_service.engine import train as engine


def test_a_run_is_an_hparams_session_with_its_settings_and_best_scores(tmp_path, data_root):
    run = RunFolder(tmp_path / "abc123")
    config = tiny_config(epochs=2, name="hp run", tags=["x", "y"], learning_rate=0.03,
                         early_stopping={"patience": 5})  # fmt: skip
    engine.train(config, run.root, data_root, LocalContext())

    events = EventAccumulator(str(run.tensorboard))
    events.Reload()
    content = events.PluginTagToContent(hparams_metadata.PLUGIN_NAME)
    (start,) = [hparams_metadata.parse_session_start_info_plugin_data(c) for c in content.values()]
    hparams = start.hparams
    assert start.group_name == "abc123"
    assert hparams["learning_rate"].number_value == pytest.approx(0.03)
    assert hparams["name"].string_value == "hp run" and hparams["flip"].bool_value is True
    assert json.loads(hparams["tags"].string_value) == ["x", "y"]
    assert json.loads(hparams["early_stopping"].string_value)["patience"] == 5
    assert "init_checkpoint" not in hparams  # unset

    history = json.loads(run.history_json.read_text())
    best = max(history, key=lambda r: r["val_accuracy"])
    scalars = {tag: [float(tensor_util.make_ndarray(e.tensor_proto)) for e in events.Tensors(tag)]
               for tag in events.Tags()["tensors"] if tag.startswith("best_")}  # fmt: skip
    assert scalars["best_val_accuracy"][-1] == pytest.approx(best["val_accuracy"])
    assert scalars["best_val_top5_accuracy"][-1] == pytest.approx(best["val_top5_accuracy"])
    assert len(scalars["best_val_accuracy"]) == 2  # one per epoch
