"""The learning rate as a function of the optimizer's step: step decay, cosine or linear decay to
zero, linear warm-up.

:class:`EpochSchedule` is a serializable Keras ``LearningRateSchedule`` computed with
``keras.ops`` from ``optimizer.iterations``. The optimizer state saved in every checkpoint holds
``iterations``, so a resumed run continues the schedule where it stopped; nothing else needs to
be restored. (The homework built a schedule but never handed it to the optimizer.)

It lives with the model because every checkpoint's optimizer holds it: loading a checkpoint with
its optimizer needs it registered (:mod:`.saved` does). The engine builds one from a run's
optimizer settings (``trainer_service.engine.train.schedule_for``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras
from keras import ops

from trainer_service.model.blocks import PACKAGE

KINDS = ("step", "cosine", "linear", "constant")


@keras.saving.register_keras_serializable(package=PACKAGE)
class EpochSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Learning rate at optimizer step ``s`` (0-based) with ``steps_per_epoch`` steps per epoch.

    - ``step``: ``base * decay_factor ** n`` where ``n`` counts the ``decay_epochs`` reached by
      the completed epochs ``s // steps_per_epoch`` (staircase at epoch boundaries: with
      ``decay_epochs=[64]`` epochs 0..63 use ``base`` and epoch 64 on ``base * factor``).
    - ``cosine``: ``base * 0.5 * (1 + cos(pi * p))`` with ``p`` going from 0 at the end of the
      warm-up to 1 at the end of ``total_epochs`` (the last step's rate is just above 0).
    - ``linear``: ``base * (1 - p)``, the same ``p``: a straight line to 0 at the end (with a
      warm-up, the triangle of a one-cycle schedule).
    - ``constant``: ``base``.
    - warm-up: over the first ``warmup_steps`` steps (``warmup_epochs * steps_per_epoch`` unless
      given in steps) the rate above is scaled by ``(s + 1) / warmup_steps`` (linear from
      ``base / warmup_steps`` to ``base``).
    """

    def __init__(
        self,
        base_lr: float,
        steps_per_epoch: int,
        kind: str = "step",
        decay_epochs: Sequence[int] = (64,),
        decay_factor: float = 0.1,
        warmup_epochs: float = 0.0,
        total_epochs: int = 72,
        warmup_steps: int | None = None,
    ):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        self.base_lr = float(base_lr)
        self.steps_per_epoch = int(steps_per_epoch)
        self.kind = kind
        self.decay_epochs = [int(e) for e in decay_epochs]
        self.decay_factor = float(decay_factor)
        self.warmup_epochs = float(warmup_epochs)
        self.total_epochs = int(total_epochs)
        self._warmup_steps = None if warmup_steps is None else int(warmup_steps)

    @property
    def warmup_steps(self) -> int:
        if self._warmup_steps is not None:
            return self._warmup_steps
        return round(self.warmup_epochs * self.steps_per_epoch)

    def __call__(self, step):
        step = ops.cast(step, "int64")
        stepf = ops.cast(step, "float32")
        if self.kind == "step":
            epoch = ops.floor_divide(step, self.steps_per_epoch)
            drops = ops.zeros((), "float32")
            for boundary in self.decay_epochs:
                drops = drops + ops.cast(ops.greater_equal(epoch, boundary), "float32")
            lr = self.base_lr * ops.power(ops.cast(self.decay_factor, "float32"), drops)
        elif self.kind in ("cosine", "linear"):
            warmup = float(self.warmup_steps)
            span = max(1.0, self.total_epochs * self.steps_per_epoch - warmup)
            progress = ops.clip((stepf - warmup) / span, 0.0, 1.0)
            if self.kind == "cosine":
                lr = self.base_lr * 0.5 * (1.0 + ops.cos(math.pi * progress))
            else:
                lr = self.base_lr * (1.0 - progress)
        else:
            lr = ops.cast(self.base_lr, "float32") + ops.zeros((), "float32")
        if self.warmup_steps > 0:
            ramp = ops.minimum(1.0, (stepf + 1.0) / float(self.warmup_steps))
            lr = lr * ramp
        return ops.cast(lr, "float32")

    def get_config(self):
        return {
            "base_lr": self.base_lr,
            "steps_per_epoch": self.steps_per_epoch,
            "kind": self.kind,
            "decay_epochs": list(self.decay_epochs),
            "decay_factor": self.decay_factor,
            "warmup_epochs": self.warmup_epochs,
            "total_epochs": self.total_epochs,
            "warmup_steps": self._warmup_steps,
        }
