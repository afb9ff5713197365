"""Keras callbacks of a run: stop on request, history, checkpoints, progress, TensorBoard.

They are used in this order (``model.fit`` calls them in list order), which the checkpoint
semantics rely on: the history row of an epoch is written before its checkpoint.

``ctx`` is the job context (``jobkit.worker.JobContext``) or anything with the same
``phase/progress/metrics/should_stop/log`` members (:class:`LocalContext` outside a job).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from trainer_service.training import checkpoints
from trainer_service.training.files import RunPaths
from trainer_service.training.history import append_epoch

PROGRESS_INTERVAL_S = 0.5
#: Keras log keys -> history columns (the metric names are chosen so they are equal).
TRAIN_KEYS = ("loss", "accuracy", "top5_accuracy")
VAL_KEYS = ("val_loss", "val_accuracy", "val_top5_accuracy")


class LocalContext:
    """A stand-in for the job context when training outside a job (tests, CLI)."""

    def __init__(self, log: logging.Logger | None = None):
        self.log = log or logging.getLogger("trainer_service.training")
        self.metrics_seen: dict[str, Any] = {}
        self._stop = False

    def phase(
        self,
        name: str,
        total: int | None = None,
        unit: str = "items",
        metrics: dict[str, Any] | None = None,
    ) -> None:
        self.metrics_seen.update(metrics or {})

    def progress(self, done: int, total: int | None = None) -> None:
        pass

    def metrics(self, values: dict[str, Any]) -> None:
        self.metrics_seen.update(values)

    @property
    def should_stop(self) -> bool:
        return self._stop

    def request_stop(self) -> None:
        self._stop = True


def to_float(value) -> float | None:
    """A Python float from a tensor/array/number (None for None or non-finite values)."""
    if value is None:
        return None
    value = float(np.asarray(keras.ops.convert_to_numpy(value)))
    return value if math.isfinite(value) else None


def current_learning_rate(model: keras.Model) -> float | None:
    """The rate the optimizer applies at its next step (the schedule at ``iterations``)."""
    return to_float(model.optimizer.learning_rate)


class RunState:
    """What the callbacks share about the epoch in flight (set by :class:`StopOnRequest`)."""

    def __init__(self, epochs: int, steps_per_epoch: int, batch_size: int):
        self.epochs = epochs
        self.steps_per_epoch = steps_per_epoch
        self.batch_size = batch_size
        self.stopped = False  # a stop was requested and honoured
        self.partial = False  # ... in the middle of an epoch (that epoch is not recorded)
        self.epoch_started = 0.0
        self.train_ended = 0.0
        self.epoch_learning_rate: float | None = None
        self.last_epoch_s: float | None = None


class StopOnRequest(keras.callbacks.Callback):
    """Stops training at the next batch once ``should_stop()`` is true (SIGTERM in the worker).

    Keras then runs the epoch end; the history and checkpoint callbacks see ``state.partial``
    and save a partial checkpoint instead of recording the epoch.
    """

    def __init__(self, should_stop: Callable[[], bool], state: RunState):
        super().__init__()
        self.should_stop = should_stop
        self.state = state

    def on_train_batch_end(self, batch, logs=None):
        if not self.state.stopped and self.should_stop():
            self.model.stop_training = True
            self.state.stopped = True
            self.state.partial = batch + 1 < self.state.steps_per_epoch

    def on_test_batch_end(self, batch, logs=None):
        if self.state.partial:  # the epoch is not recorded: no need to validate it
            self.model.stop_evaluating = True


class EpochTimer(keras.callbacks.Callback):
    """Times the epoch (train part and total) and notes the learning rate it starts with."""

    def __init__(self, state: RunState):
        super().__init__()
        self.state = state

    def on_epoch_begin(self, epoch, logs=None):
        self.state.epoch_started = self.state.train_ended = time.monotonic()
        self.state.epoch_learning_rate = current_learning_rate(self.model)

    def on_train_batch_end(self, batch, logs=None):
        self.state.train_ended = time.monotonic()


def epoch_row(epoch: int, logs: dict, state: RunState, step: int) -> dict[str, Any]:
    """The history row of the completed ``epoch`` (1-based)."""
    now = time.monotonic()
    train_s = max(state.train_ended - state.epoch_started, 1e-9)
    row: dict[str, Any] = {"epoch": epoch, "step": step}
    for key in TRAIN_KEYS + VAL_KEYS:
        row[key] = to_float(logs.get(key))
    row["learning_rate"] = state.epoch_learning_rate
    row["epoch_time_s"] = round(now - state.epoch_started, 4)
    row["images_per_s"] = round(state.steps_per_epoch * state.batch_size / train_s, 2)
    return row


class HistoryRecorder(keras.callbacks.Callback):
    """Appends each completed epoch to history.csv/json and logs a line about it."""

    def __init__(self, paths: RunPaths, state: RunState, log: logging.Logger):
        super().__init__()
        self.paths = paths
        self.state = state
        self.log = log
        self.last_row: dict[str, Any] | None = None

    def on_epoch_end(self, epoch, logs=None):
        if self.state.partial:
            return
        step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        row = epoch_row(epoch + 1, logs or {}, self.state, step)
        append_epoch(self.paths, row)
        self.state.last_epoch_s = row["epoch_time_s"]
        self.last_row = row
        shown = ", ".join(
            f"{k}={row[k]:.4g}" for k in (*TRAIN_KEYS, *VAL_KEYS) if row[k] is not None
        )
        self.log.info(
            "epoch %d/%d: %s, lr=%.3g, %.1f s, %.0f images/s",
            epoch + 1,
            self.state.epochs,
            shown,
            row["learning_rate"] or 0.0,
            row["epoch_time_s"],
            row["images_per_s"],
        )


class Checkpointer(keras.callbacks.Callback):
    """Saves a checkpoint after every epoch (or a partial one when stopped mid-epoch)."""

    def __init__(self, paths: RunPaths, state: RunState, keep: int, log: logging.Logger):
        super().__init__()
        self.paths = paths
        self.state = state
        self.keep = keep
        self.log = log

    def on_epoch_end(self, epoch, logs=None):
        step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        if self.state.partial:
            path = checkpoints.save_partial(
                self.model, self.paths, epoch, step, steps_per_epoch=self.state.steps_per_epoch
            )
            self.log.info("stopped during epoch %d: saved %s (step %d)", epoch + 1, path, step)
            return
        checkpoints.save_epoch(
            self.model,
            self.paths,
            epoch + 1,
            step,
            to_float((logs or {}).get("val_accuracy")),
            keep=self.keep,
            steps_per_epoch=self.state.steps_per_epoch,
        )


class ProgressReporter(keras.callbacks.Callback):
    """Reports the epoch, batch, images/s, ETA and latest metrics to the job context."""

    def __init__(self, ctx, state: RunState, interval_s: float = PROGRESS_INTERVAL_S):
        super().__init__()
        self.ctx = ctx
        self.state = state
        self.interval_s = interval_s
        self._last = 0.0
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        s = self.state
        self.ctx.phase(
            f"epoch {epoch + 1}/{s.epochs}",
            total=s.steps_per_epoch,
            unit="batches",
            metrics={  # with the phase, in one write: the status never shows them apart
                "epoch": epoch + 1,
                "epochs": s.epochs,
                "step": 0,
                "steps_per_epoch": s.steps_per_epoch,
                "learning_rate": s.epoch_learning_rate,
            },
        )
        self._last = time.monotonic()

    def eta_s(self, done: int, rate: float) -> float:
        s = self.state
        left_now = (s.steps_per_epoch - done) / rate
        per_epoch = s.last_epoch_s or s.steps_per_epoch / rate
        return round(left_now + (s.epochs - self._epoch - 1) * per_epoch, 1)

    def on_train_batch_end(self, batch, logs=None):
        done = batch + 1
        self.ctx.progress(done)
        now = time.monotonic()
        if now - self._last < self.interval_s and done < self.state.steps_per_epoch:
            return
        self._last = now
        elapsed = max(now - self.state.epoch_started, 1e-9)
        rate = done / elapsed
        values = {
            "step": done,
            "global_step": self._epoch * self.state.steps_per_epoch + done,
            "images_per_s": round(rate * self.state.batch_size, 2),
            "eta_s": self.eta_s(done, rate),
        }
        for key in TRAIN_KEYS:
            if logs and key in logs:
                values[key] = to_float(logs[key])
        self.ctx.metrics(values)

    def on_epoch_end(self, epoch, logs=None):
        if self.state.partial:
            return
        values = {k: to_float(v) for k, v in (logs or {}).items() if k in TRAIN_KEYS + VAL_KEYS}
        values["completed_epochs"] = epoch + 1
        values["epoch_time_s"] = self.state.last_epoch_s
        values["eta_s"] = round((self.state.epochs - epoch - 1) * (self.state.last_epoch_s or 0), 1)
        self.ctx.metrics(values)


class TensorBoardScalars(keras.callbacks.Callback):
    """Epoch scalars as TensorBoard event files (``tensorboard/train`` and ``/validation``).

    Same layout and tags as ``keras.callbacks.TensorBoard`` (``epoch_loss``, ...), written with
    TensorFlow's core summary ops, so it works without the ``tensorboard`` package (which
    ``tf.summary.scalar`` needs) and on the JAX backend (TensorFlow is there for tf.data).
    """

    def __init__(self, paths: RunPaths, state: RunState):
        super().__init__()
        self.paths = paths
        self.state = state
        self._writers: dict[str, Any] = {}

    def _writer(self, name: str):
        import tensorflow as tf

        if name not in self._writers:
            self._writers[name] = tf.summary.create_file_writer(str(self.paths.tensorboard / name))
        return self._writers[name]

    def _write(self, name: str, values: dict[str, float | None], step: int) -> None:
        import tensorflow as tf
        from tensorflow.core.framework import summary_pb2

        metadata = summary_pb2.SummaryMetadata()
        metadata.plugin_data.plugin_name = "scalars"
        metadata.data_class = summary_pb2.DATA_CLASS_SCALAR
        writer = self._writer(name)
        with writer.as_default():
            for tag, value in values.items():
                if value is not None:
                    tf.summary.write(
                        f"epoch_{tag}", tf.constant(value, tf.float32), step=step, metadata=metadata
                    )
        writer.flush()

    def on_epoch_end(self, epoch, logs=None):
        if self.state.partial:
            return
        logs = logs or {}
        train = {k: to_float(logs.get(k)) for k in TRAIN_KEYS}
        train["learning_rate"] = self.state.epoch_learning_rate
        self._write("train", train, epoch)
        self._write("validation", {k[4:]: to_float(logs.get(k)) for k in VAL_KEYS}, epoch)

    def on_train_end(self, logs=None):
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()
