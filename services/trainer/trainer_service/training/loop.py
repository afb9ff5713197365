"""Train the ResNet on a prepared dataset: ``train(config, run_dir, data_root, ctx)``.

:func:`train` reads top to bottom: the dataset's metadata and the tf.data pipelines (uint8
batches; the model's first layer standardizes them and, in training only, flips them on the
accelerator); the model with its L2 weight decay, compiled with the optimizer and its epoch
schedule, sparse cross-entropy on logits, top-1 and top-5 accuracy; the checkpoint a resume
starts from (or the warm-start weights); ``model.fit`` with the two callbacks of
:mod:`.callbacks`; then the final export, and the test predictions and val scores of the best
checkpoint (:mod:`trainer_service.predict`). The training step is pure Keras, so it runs on the
TensorFlow and JAX backends; TensorFlow serves the input pipeline only.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import keras
import numpy as np

from jobkit.errors import JobFailed
from jobkit.files import atomic_write_json
from jobkit.paths import OutsideRoot, resolve_inside
from jobkit.worker import LocalContext, is_out_of_memory
from shard_format.preprocess import Preprocess
from trainer_service.model.resnet import build_resnet
from trainer_service.predict import loss, metrics, predict_and_evaluate
from trainer_service.training import checkpoints
from trainer_service.training.callbacks import RunRecorder, StopOnRequest, optimizer_step
from trainer_service.training.config import TrainConfig
from trainer_service.training.data import input_pipelines, load_dataset
from trainer_service.training.files import RunPaths, atomic_save_model
from trainer_service.training.history import read_history, truncate_history
from trainer_service.training.runtime import Runtime, resolve_runtime
from trainer_service.training.schedule import schedule_for


def train(
    config: TrainConfig, run_dir: Path, data_root: Path, ctx=None, *, strategy=None
) -> dict[str, Any]:
    """Train (or resume, if ``run_dir`` has a checkpoint) and return the run's result.

    ``ctx``: the job context (progress, metrics, stop flag, log); a ``LocalContext`` if None.
    ``strategy``: a ``tf.distribute`` strategy instead of the default (tests). A stop during
    the set-up raises ``JobCancelled`` at once (nothing to save yet); a stop during training
    saves a checkpoint and returns early with ``result["stopped"] = True``. Raises
    ``JobFailed`` for unusable input and for out-of-memory (``type="out_of_memory"``).
    """
    ctx = ctx or LocalContext(logging.getLogger("trainer_service.training"))
    paths = RunPaths(Path(run_dir))
    with ctx.interruptible():
        paths.make()
        atomic_write_json(paths.config, config.model_dump(mode="json"))
        folder, metadata = load_dataset(data_root, config.dataset)
        latest = checkpoints.read_latest(paths)
        initial_epoch = latest.epoch if latest else 0
        truncate_history(paths, initial_epoch)  # epochs recorded after the checkpoint are redone
        runtime = resolve_runtime(config, strategy)
        ctx.log.info("runtime: %s", runtime.describe())
        keras.utils.set_random_seed(config.seed)
        # A resumed run shuffles differently from the epochs it already did.
        train_ds, steps, val_ds = input_pipelines(
            config, folder, metadata, config.seed + initial_epoch
        )
    result: dict[str, Any] = {
        "run_dir": str(paths.root),
        "dataset": config.dataset,
        "steps_per_epoch": steps,
        "runtime": runtime.describe(),
        "resumed_from": None,
        "init": None,
    }
    try:
        with ctx.interruptible(), runtime.scope():
            model = build_model(config, metadata.num_classes)
            compile_model(model, config, runtime, steps)
            if latest is not None:
                result["resumed_from"] = restore(model, paths, latest, steps)
                ctx.log.info("resumed from %s", result["resumed_from"])
            elif config.init_checkpoint:
                result["init"] = warm_start(model, data_root, config.init_checkpoint)
                ctx.log.info("weights from %s", config.init_checkpoint)
        ctx.log.info(
            "model: %d parameters; %d train steps of %d per epoch; epochs %d..%d",
            model.count_params(),
            steps,
            config.batch_size,
            initial_epoch + 1,
            config.epochs,
        )
        if initial_epoch < config.epochs:
            model.fit(
                train_ds,
                validation_data=val_ds,
                epochs=config.epochs,
                initial_epoch=initial_epoch,
                callbacks=[
                    StopOnRequest(lambda: ctx.should_stop, steps),
                    RunRecorder(
                        paths,
                        ctx,
                        epochs=config.epochs,
                        steps_per_epoch=steps,
                        batch_size=config.batch_size,
                        keep=config.keep_checkpoints,
                    ),
                ],
                shuffle=False,  # the pipeline shuffles
                verbose=0,
            )
        done = checkpoints.read_latest(paths)
        best = checkpoints.read_best(paths)
        result["epochs_completed"] = done.epoch if done else 0
        result["history"] = read_history(paths)[-1:] or None
        result["best"] = best
        if ctx.should_stop:  # a resume finishes the run
            return {**result, "stopped": True}

        ctx.phase("export")
        result.update(export_final(model, paths, config, ctx.log))
        ctx.phase("predict")
        with runtime.scope():
            model.load_weights(paths.best)
        result["evaluation"] = predict_and_evaluate(
            model,
            folder,
            metadata,
            paths.root,
            batch_size=config.batch_size,
            limit_val_steps=config.limit_val_steps,
            checkpoint={"checkpoint": paths.best.name, "epoch": best["epoch"] if best else None},
        )
        return {**result, "predictions": paths.predictions.name, "stopped": False}
    except Exception as exc:
        if isinstance(exc, JobFailed) or not is_out_of_memory(exc):
            raise
        raise JobFailed(
            f"out of memory on {runtime.device} (batch_size {config.batch_size}, "
            f"width {config.width}, {runtime.dtype_policy}): {_first_line(str(exc))}; "
            "try a smaller batch_size or width",
            "out_of_memory",
        ) from exc


# -- the model -------------------------------------------------------------------------------


def build_model(config: TrainConfig, classes: int) -> keras.Model:
    """The ResNet with its L2 weight decay, taking uint8 images (preprocessing inside)."""
    return build_resnet(
        classes,
        config.filters,
        config.levels,
        weight_decay=config.weight_decay,
        preprocessing=Preprocess(seed=config.seed, name="preprocess"),
        input_dtype="uint8",
    )


def compile_model(
    model: keras.Model, config: TrainConfig, runtime: Runtime, steps_per_epoch: int
) -> None:
    """SGD (momentum) or Adam following the config's schedule; the loss and metrics of
    :mod:`trainer_service.predict`."""
    learning_rate = schedule_for(config, steps_per_epoch)
    if config.optimizer == "adam":
        optimizer = keras.optimizers.Adam(learning_rate=learning_rate)
    else:
        optimizer = keras.optimizers.SGD(learning_rate=learning_rate, momentum=config.momentum)
    model.compile(
        optimizer=optimizer,
        loss=loss(),
        metrics=metrics(),
        jit_compile=runtime.jit_compile,
        steps_per_execution=runtime.steps_per_execution,
    )


def weights_digest(model: keras.Model) -> str:
    """SHA-256 of all weights (trainable and not) in order: equal digests, equal weights."""
    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight)).tobytes())
    return digest.hexdigest()


# -- where the weights start -----------------------------------------------------------------


def restore(
    model: keras.Model, paths: RunPaths, latest: checkpoints.Latest, steps_per_epoch: int
) -> dict[str, Any]:
    """Load the checkpoint ``latest`` names (weights and optimizer state) into ``model``.

    A run stopped in the middle of epoch ``E + 1`` redoes that epoch exactly: from the weights
    and optimizer state it began with (``epoch-E``'s checkpoint; the fresh, seeded model when
    ``E`` is 0), not from ``partial.keras``, so no batch is trained twice and the step counter
    equals an uninterrupted run's. Returns what was restored.
    """
    model.optimizer.build(model.trainable_variables)
    path = paths.checkpoints / latest.file
    if latest.partial:
        path = checkpoints.epoch_files(paths).get(latest.epoch)
        if path is None and latest.epoch > 0:
            raise JobFailed(
                f"cannot resume: the checkpoint of epoch {latest.epoch} is missing",
                "invalid_input",
            )
    if path is not None:
        model.load_weights(path)
    if latest.steps_per_epoch not in (None, steps_per_epoch):
        logging.getLogger(__name__).warning(
            "steps per epoch changed from %s to %s since the checkpoint (dataset re-prepared?)",
            latest.steps_per_epoch,
            steps_per_epoch,
        )
    return {
        "epoch": latest.epoch,
        "file": path.name if path is not None else None,
        "partial": latest.partial,
        "step": optimizer_step(model),
        "weights_sha256": weights_digest(model),
    }


def warm_start(model: keras.Model, data_root: Path, relative: str) -> dict[str, Any]:
    """Copy the weights of the ``init_checkpoint`` (a .keras file under the data root)."""
    try:
        path = resolve_inside(data_root, relative)
    except OutsideRoot:
        path = None
    if path is None or not path.is_file():
        raise JobFailed(
            f"init_checkpoint {relative!r}: no such file in the data root", "invalid_input"
        )
    try:
        source = keras.models.load_model(path, compile=False)
        model.set_weights(source.get_weights())
    except (ValueError, OSError) as exc:
        raise JobFailed(
            f"init_checkpoint {relative!r} does not fit this model: {exc}", "invalid_input"
        ) from exc
    return {"init_checkpoint": relative, "weights_sha256": weights_digest(model)}


# -- the end ---------------------------------------------------------------------------------


def export_final(model: keras.Model, paths: RunPaths, config: TrainConfig, log) -> dict[str, Any]:
    """Save model.keras and, on the TensorFlow backend, a SavedModel (best effort)."""
    atomic_save_model(model, paths.model)
    out: dict[str, Any] = {"model": paths.model.name, "savedmodel": None}
    if config.export_savedmodel and keras.backend.backend() == "tensorflow":
        tmp = paths.root / f".{paths.savedmodel.name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            model.export(str(tmp), format="tf_saved_model", verbose=False)
            shutil.rmtree(paths.savedmodel, ignore_errors=True)
            os.replace(tmp, paths.savedmodel)
            out["savedmodel"] = paths.savedmodel.name
        except Exception as exc:  # the .keras file is the export that matters
            shutil.rmtree(tmp, ignore_errors=True)
            log.warning("SavedModel export failed: %s", _first_line(str(exc)))
    return out


def _first_line(text: str, limit: int = 300) -> str:
    line = next((s for s in text.strip().splitlines() if s.strip()), "")
    return line if len(line) <= limit else line[:limit] + "..."
