"""train() with a recipe's options: what the model and optimizer are built with, what the run
folder records, the weight average, the decoupled weight decay, zero-initialised branches, and a
stop and resume of a run whose training step mixes images."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from datavolume.runs import RunFolder
from jobkit.context import LocalContext
from tests.trainer.support import tiny_config
from trainer_service.engine import train as engine
from trainer_service.engine.objective import TrainingModel
from trainer_service.engine.runtime import resolve_runtime
from trainer_service.model.augment import Augment
from trainer_service.model.saved import load_model
from trainer_service.runs import checkpoints
from trainer_service.runs.history import read_history

#: The fast recipe, shortened to what the toy dataset and a CPU allow.
FAST_TOY = {"recipe": "fast", "epochs": 2, "batch_size": 16, "warmup_epochs": 0.5,
            "learning_rate": 0.05}  # fmt: skip


def _compiled(config, steps=10):
    model = engine.build_model(config, 4)
    trained = engine.compile_model(model, config, resolve_runtime(config), steps)
    return model, trained


def test_the_homework_recipe_builds_todays_model_and_step():
    config = tiny_config()
    model, trained = _compiled(config)
    assert trained is model  # no wrapper: the homework's compiled step
    assert [layer.name for layer in model.layers][:2] == ["images", "preprocess"]
    assert not any(isinstance(layer, Augment) for layer in model.layers)
    optimizer = model.optimizer
    assert (optimizer.nesterov, optimizer.use_ema, optimizer.weight_decay) == (False, False, None)


def test_a_recipe_with_mixing_or_flips_trains_a_wrapper_that_shares_the_optimizer():
    model, trained = _compiled(tiny_config(mixup_alpha=0.2, crop_padding=4, nesterov=True))
    assert isinstance(trained, TrainingModel) and trained.network is model
    assert trained.optimizer is model.optimizer and model.optimizer.nesterov
    (augment,) = [layer for layer in model.layers if isinstance(layer, Augment)]
    assert augment.crop_padding == 4
    assert model.get_layer("preprocess").flip is True


def test_the_flip_can_be_turned_off():
    model, _ = _compiled(tiny_config(flip=False))
    assert model.get_layer("preprocess").flip is False


def test_decoupled_weight_decay_spares_batchnorm_and_biases_unless_asked():
    model, _ = _compiled(tiny_config(decoupled_weight_decay=0.05))
    optimizer = model.optimizer
    optimizer.build(model.trainable_variables)
    decayed = {v.path for v in model.trainable_variables if optimizer._use_weight_decay(v)}
    assert decayed and all(v.endswith("kernel") for v in decayed)
    assert optimizer.weight_decay == pytest.approx(0.05)
    model, _ = _compiled(tiny_config(decoupled_weight_decay=0.05, decay_norm_and_bias=True))
    model.optimizer.build(model.trainable_variables)
    assert all(model.optimizer._use_weight_decay(v) for v in model.trainable_variables)


def test_zero_initialised_branches_start_as_their_shortcut_and_still_learn():
    config = tiny_config(zero_init_residual=True)
    model, _ = _compiled(config)
    block = model.get_layer("level1_bottleneck1")
    x = keras.random.normal((2, 32, 32, 8), seed=1)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(block.residual(x)), 0.0)
    images = np.random.default_rng(0).integers(0, 256, (16, 64, 64, 3), dtype=np.uint8)
    model.fit(images, np.arange(16) % 4, batch_size=16, epochs=1, verbose=0)
    kernel = keras.ops.convert_to_numpy(block.expand.conv.kernel)
    assert np.abs(kernel).max() > 0  # the last convolution gets a gradient: not a dead branch


def test_a_fast_run_records_its_resolved_recipe_and_its_flip_averaged_scores(data_root, tmp_path):
    config = tiny_config(**FAST_TOY)
    run = RunFolder(tmp_path / "run")
    result = engine.train(config, run.root, data_root, LocalContext())
    saved = json.loads(run.config.read_text())
    assert saved["recipe"] == "fast" and saved["crop_padding"] == 4
    assert saved["label_smoothing"] == 0.1 and saved["nesterov"] is True
    assert all(row["tta_flip"] is True for row in read_history(run))
    assert result.evaluation["tta_flip"] is True
    assert json.loads(run.evaluation.read_text())["tta_flip"] is True
    # What is saved is the network: uint8 images in, logits out; the checkpoints with their
    # optimizer (a resume needs it), the final model without (an inference model).
    for path in (run.model, run.best, *checkpoints.epoch_files(run).values()):
        model = load_model(path)
        assert not isinstance(model, TrainingModel)
        assert model.predict(np.zeros((1, 64, 64, 3), np.uint8), verbose=0).shape == (1, 4)
        if path == run.model:
            assert getattr(model, "optimizer", None) is None
        else:
            assert model.optimizer is not None and model.optimizer.nesterov


def test_checkpoints_keep_the_weight_average_and_the_export_uses_it(data_root, tmp_path):
    config = tiny_config(epochs=2, use_ema=True, ema_momentum=0.9)
    run = RunFolder(tmp_path / "run")
    engine.train(config, run.root, data_root, LocalContext())
    last = load_model(checkpoints.epoch_files(run)[2])
    averages = [
        keras.ops.convert_to_numpy(v) for v in last.optimizer._model_variables_moving_average
    ]
    raw = [keras.ops.convert_to_numpy(v) for v in last.trainable_variables]
    assert any(not np.allclose(a, r) for a, r in zip(averages, raw, strict=True))
    exported = [keras.ops.convert_to_numpy(v) for v in load_model(run.model).trainable_variables]
    for average, weight in zip(averages, exported, strict=True):
        np.testing.assert_allclose(weight, average, rtol=1e-6, atol=1e-7)  # model.keras: EMA


def test_a_mixing_run_stopped_mid_epoch_resumes_at_the_same_step(data_root, tmp_path):
    config = tiny_config(epochs=2, mixup_alpha=0.4, cutmix_alpha=1.0, label_smoothing=0.1)
    run = RunFolder(tmp_path / "run")

    class StopInEpoch2(LocalContext):
        def progress(self, done, total=None):
            if self.phases[-1].startswith("epoch 2") and done >= 3:
                self.request_stop()

    stopped = engine.train(config, run.root, data_root, StopInEpoch2())
    assert stopped.stopped and checkpoints.read_latest(run).partial
    resumed = engine.train(config, run.root, data_root, LocalContext())
    assert resumed.resumed_from["epoch"] == 1 and not resumed.stopped
    steps = resumed.steps_per_epoch
    assert [r["step"] for r in read_history(run)] == [steps, 2 * steps]
