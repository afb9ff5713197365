"""The run's two Keras callbacks. Each keeps its own state: neither depends on the other, nor
on their order in the list.

- :class:`StopOnRequest` ends ``fit`` at the next batch once the job is asked to stop.
- :class:`RunRecorder` writes everything the run folder and the job status show, epoch by
  epoch, in the order a resume relies on (see :mod:`.checkpoints`).

``ctx`` is the job context: ``jobkit.worker.JobContext``, or ``LocalContext`` outside a job.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from datavolume.runs import RunFolder
from trainer_service.runs import checkpoints
from trainer_service.runs.config import Recording
from trainer_service.runs.history import append_epoch, read_history

PROGRESS_INTERVAL_S = 0.5
#: Keras log keys, which are the history columns too (the metrics are named so).
TRAIN_KEYS = ("loss", "accuracy", "top5_accuracy")
VAL_KEYS = ("val_loss", "val_accuracy", "val_top5_accuracy")


def to_float(value) -> float | None:
    """A Python float from a tensor/array/number (None for None or non-finite values)."""
    if value is None:
        return None
    value = float(np.asarray(keras.ops.convert_to_numpy(value)))
    return value if math.isfinite(value) else None


def optimizer_step(model: keras.Model) -> int:
    return int(keras.ops.convert_to_numpy(model.optimizer.iterations))


class StopOnRequest(keras.callbacks.Callback):
    """Sets ``model.stop_training`` at the first batch end after ``should_stop()`` turns true
    (SIGTERM in the worker). An epoch cut short is not validated: it will not be recorded."""

    def __init__(self, should_stop: Callable[[], bool], steps_per_epoch: int):
        super().__init__()
        self.should_stop = should_stop
        self.steps_per_epoch = steps_per_epoch
        self.mid_epoch = False

    def on_train_batch_end(self, batch, logs=None):
        if not self.model.stop_training and self.should_stop():
            self.model.stop_training = True
            self.mid_epoch = batch + 1 < self.steps_per_epoch

    def on_test_batch_end(self, batch, logs=None):
        if self.mid_epoch:
            self.model.stop_evaluating = True


class RunRecorder(keras.callbacks.Callback):
    """Progress while an epoch trains; after it, in this order:

    1. its row in history.csv/json (and history.png);
    2. its checkpoint (epoch file, best, latest.json: from here a resume starts after it);
    3. its TensorBoard scalars, the job's metrics and a log line.

    An epoch that did not run all its batches (a stop) saves ``partial.keras`` instead and
    records nothing.
    """

    def __init__(
        self,
        run: RunFolder,
        ctx,
        recording: Recording,
        *,
        steps_per_epoch: int,
        network=None,
        hparams=None,
    ):
        super().__init__()
        #: The run's settings, for TensorBoard's HParams dashboard (None: not written).
        self.hparams = hparams
        #: What the checkpoints save: the network (``fit`` may train a wrapper around it).
        self.network = network
        self.tta_flip = recording.tta_flip
        self.run, self.ctx, self.keep = run, ctx, recording.keep_checkpoints
        self.epochs, self.steps = recording.epochs, steps_per_epoch
        self.batch_size = recording.batch_size
        self.events = EventFiles(run)
        self.last_epoch_s: float | None = None

    @property
    def saved_model(self):
        return self.network if self.network is not None else self.model

    def on_train_begin(self, logs=None):
        if self.hparams is not None:
            self.events.write_hparams(self.run.root.name, self.hparams)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.batches = epoch, 0
        self.started = self.train_ended = self.reported = time.monotonic()
        self.learning_rate = to_float(self.model.optimizer.learning_rate)  # at this step
        self.ctx.phase(
            f"epoch {epoch + 1}/{self.epochs}",
            total=self.steps,
            unit="batches",
            metrics={  # with the phase, in one write: the status never shows them apart
                "epoch": epoch + 1,
                "epochs": self.epochs,
                "step": 0,
                "steps_per_epoch": self.steps,
                "learning_rate": self.learning_rate,
            },
        )

    def eta_s(self, epoch_s: float, left_in_epoch_s: float = 0.0) -> float:
        return round(left_in_epoch_s + (self.epochs - self.epoch - 1) * epoch_s, 1)

    def on_train_batch_end(self, batch, logs=None):
        self.batches = batch + 1
        now = self.train_ended = time.monotonic()
        self.ctx.progress(self.batches)
        if now - self.reported < PROGRESS_INTERVAL_S and self.batches < self.steps:
            return
        self.reported = now
        rate = self.batches / max(now - self.started, 1e-9)
        logs = logs or {}
        self.ctx.metrics(
            {
                "step": self.batches,
                "global_step": self.epoch * self.steps + self.batches,
                "images_per_s": round(rate * self.batch_size, 2),
                "eta_s": self.eta_s(
                    self.last_epoch_s or self.steps / rate, (self.steps - self.batches) / rate
                ),
                **{key: to_float(logs[key]) for key in TRAIN_KEYS if key in logs},
            }
        )

    def on_epoch_end(self, epoch, logs=None):
        step = optimizer_step(self.model)
        if self.batches < self.steps:
            path = checkpoints.save_partial(
                self.saved_model, self.run, epoch, step, steps_per_epoch=self.steps
            )
            self.ctx.log.info(
                "stopped during epoch %d: saved checkpoints/%s (step %d)",
                epoch + 1,
                path.name,
                step,
            )
            return
        now = time.monotonic()
        scores = {key: to_float((logs or {}).get(key)) for key in TRAIN_KEYS + VAL_KEYS}
        row = {
            "epoch": epoch + 1,
            "step": step,
            **scores,
            "learning_rate": self.learning_rate,
            "epoch_time_s": round(now - self.started, 4),
            "images_per_s": round(
                self.steps * self.batch_size / max(self.train_ended - self.started, 1e-9), 2
            ),
            "tta_flip": self.tta_flip,
        }
        append_epoch(self.run, row)
        checkpoints.save_epoch(
            self.saved_model,
            self.run,
            epoch + 1,
            step,
            scores["val_accuracy"],
            keep=self.keep,
            steps_per_epoch=self.steps,
        )
        self.events.write(epoch, row)
        self.events.write_best(epoch, self.run)
        self.last_epoch_s = row["epoch_time_s"]
        self.ctx.metrics(
            {
                **scores,
                "completed_epochs": epoch + 1,
                "epoch_time_s": self.last_epoch_s,
                "eta_s": self.eta_s(self.last_epoch_s),
            }
        )
        shown = ", ".join(f"{k}={v:.4g}" for k, v in scores.items() if v is not None)
        self.ctx.log.info(
            "epoch %d/%d: %s, lr=%.3g, %.1f s, %.0f images/s",
            epoch + 1,
            self.epochs,
            shown,
            row["learning_rate"] or 0.0,
            row["epoch_time_s"],
            row["images_per_s"],
        )

    def on_train_end(self, logs=None):
        self.events.close()


class EventFiles:
    """Epoch scalars as TensorBoard event files (``tensorboard/train`` and ``/validation``), and
    the run's settings for the HParams dashboard (``tensorboard/`` itself).

    The layout and tags of ``keras.callbacks.TensorBoard`` (``epoch_loss``, ...), written with
    TensorFlow's core summary ops, so either Keras backend writes the same files. The HParams
    plugin reads ``tensorboard/`` as one session: its settings (written when training starts),
    the train and validation scalars below it, and ``best_val_accuracy`` /
    ``best_val_top5_accuracy`` (the best epoch so far), so its table lists every run with its
    settings and best scores.
    """

    def __init__(self, run: RunFolder):
        self.folder = run.tensorboard
        self._writers: dict[str, Any] = {}

    def write(self, epoch: int, row: dict[str, Any]) -> None:
        train = {key: row[key] for key in (*TRAIN_KEYS, "learning_rate")}
        self._write("train", train, epoch)
        self._write("validation", {key[4:]: row[key] for key in VAL_KEYS}, epoch)

    def write_hparams(self, trial_id: str, hparams: dict[str, Any]) -> None:
        from tensorboard.plugins.hparams import api as hp

        with self._writer("").as_default():
            hp.hparams(hparams, trial_id=trial_id)
        self._writer("").flush()

    def write_best(self, epoch: int, run: RunFolder) -> None:
        best = checkpoints.read_best(run)
        if best is None:
            return
        row = next((r for r in read_history(run) if r["epoch"] == best["epoch"]), {})
        values = {"best_val_accuracy": row.get("val_accuracy"),
                  "best_val_top5_accuracy": row.get("val_top5_accuracy")}  # fmt: skip
        self._write("", values, epoch, prefix="")

    def _writer(self, name: str):
        import tensorflow as tf

        if name not in self._writers:
            self._writers[name] = tf.summary.create_file_writer(str(self.folder / name))
        return self._writers[name]

    def _write(
        self, name: str, values: dict[str, float | None], step: int, prefix: str = "epoch_"
    ) -> None:
        import tensorflow as tf
        from tensorflow.core.framework import summary_pb2

        metadata = summary_pb2.SummaryMetadata()
        metadata.plugin_data.plugin_name = "scalars"
        metadata.data_class = summary_pb2.DATA_CLASS_SCALAR
        writer = self._writer(name)
        with writer.as_default():
            for tag, value in values.items():
                if value is not None:
                    scalar = tf.constant(value, tf.float32)
                    tf.summary.write(f"{prefix}{tag}", scalar, step=step, metadata=metadata)
        writer.flush()

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()
