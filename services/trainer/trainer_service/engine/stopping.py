"""When a run ends before its last epoch: early stopping, a training-time limit, and the epochs
a time budget allows.

- :class:`StoppingRules` (a Keras callback, with its own state; in any place of the callback
  list) ends ``fit`` after an epoch whose monitored val score has not improved for
  ``patience`` epochs, or at the first batch end past ``max_runtime_min`` of training (the
  epochs a resumed run already trained count, from their history rows). Either way the run ends
  ``succeeded`` with ``result["stopped_early"]`` naming the rule; a stop in the middle of an
  epoch saves ``partial.keras`` as a cancel does (:class:`~.callbacks.RunRecorder`).
- :class:`TrialGate` (a Keras callback, for a run that is a sweep's trial: ``runs.trial``):
  after each complete epoch it reports the sweep's metric and waits for the sweep's verdict;
  told to prune, it ends ``fit`` at that epoch's end (``reason`` ``"pruned"``), its checkpoint
  saved by :class:`~.callbacks.RunRecorder` as after any epoch.
- :func:`plan_epochs`: with ``time_budget_min`` the run trains its first epoch, then sets its
  number of epochs from how long that took, so that training ends within the budget; the
  schedule is then rebuilt for those epochs (it decays to its end at the budget rather than
  being cut off). The plan is kept in ``budget.json``: a resumed run keeps it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import keras

from datavolume.files import atomic_write_json, read_json
from datavolume.runs import RunFolder
from trainer_service.runs import trial
from trainer_service.runs.config import Stopping, TrainConfig

EARLY_STOPPING, MAX_RUNTIME, PRUNED = "early_stopping", "max_runtime", "pruned"


class StoppingRules(keras.callbacks.Callback):
    """Sets ``model.stop_training`` when a rule of the config says so; ``reason`` names it."""

    def __init__(
        self,
        config: Stopping,
        history: list[dict[str, Any]],
        steps_per_epoch: int,
        clock: Callable[[], float] = time.monotonic,
    ):
        super().__init__()
        self.rule = config.early_stopping
        self.limit_s = config.max_runtime_min * 60 if config.max_runtime_min else None
        self.steps, self.clock = steps_per_epoch, clock
        self.reason: str | None = None
        self.mid_epoch = False
        # What the epochs already trained (a resumed run) count.
        self.trained_s = sum(row.get("epoch_time_s") or 0.0 for row in history)
        self.best: float | None = None
        self.waited = 0
        for row in history:
            self._score(row.get(self.rule.monitor) if self.rule else None)

    def runtime_s(self) -> float:
        return self.trained_s + (self.clock() - self.started)

    def on_train_begin(self, logs=None):
        self.started = self.clock()

    def on_train_batch_end(self, batch, logs=None):
        over = self.limit_s is not None and self.runtime_s() >= self.limit_s
        if over and not self.model.stop_training:
            self._stop(MAX_RUNTIME)
            self.mid_epoch = batch + 1 < self.steps

    def on_test_batch_end(self, batch, logs=None):
        if self.mid_epoch:  # an epoch cut short is not validated (nor recorded)
            self.model.stop_evaluating = True

    def on_epoch_end(self, epoch, logs=None):
        if self.reason is not None:
            return
        if self.rule is not None:
            self._score((logs or {}).get(self.rule.monitor))
            if self.waited >= self.rule.patience:
                self._stop(EARLY_STOPPING)
                return
        if self.limit_s is not None and self.runtime_s() >= self.limit_s:
            self._stop(MAX_RUNTIME)  # the limit passed while validating: after this epoch

    def _score(self, value) -> None:
        """Count an epoch's monitored score (None: not scored, counts as no improvement)."""
        if self.rule is None:
            return
        value = None if value is None else float(value)
        if value is not None and math.isfinite(value):
            sign = -1.0 if self.rule.monitor == "val_loss" else 1.0
            if self.best is None or sign * (value - self.best) > self.rule.min_delta:
                self.best, self.waited = value, 0
                return
        self.waited += 1

    def _stop(self, reason: str) -> None:
        self.reason = reason
        self.model.stop_training = True


class TrialGate(keras.callbacks.Callback):
    """A sweep's trial: after each complete epoch, the metric out, the verdict in (see the
    module docstring). ``give_up()`` ends a wait (a stop request)."""

    def __init__(
        self,
        run: RunFolder,
        link: trial.TrialLink,
        steps_per_epoch: int,
        give_up: Callable[[], bool] = lambda: False,
    ):
        super().__init__()
        self.run, self.link, self.steps, self.give_up = run, link, steps_per_epoch, give_up
        self.reason: str | None = None
        self.batches = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches = batch + 1

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.link.metric)
        if self.batches < self.steps or value is None or self.give_up():
            return  # an epoch cut short is not recorded, nor reported
        trial.report(self.run, epoch + 1, float(value))
        verdict = trial.await_verdict(self.run, epoch + 1, self.link.verdict_wait_s, self.give_up)
        if verdict:
            self.reason = PRUNED
            self.model.stop_training = True


@dataclass(frozen=True)
class BudgetPlan:
    """The epochs a time budget allows, as decided after the first epoch."""

    budget_min: float
    first_epoch_s: float
    epochs: int

    def apply(self, config: TrainConfig) -> TrainConfig:
        """``config`` for the planned length: ``epochs``, and a step schedule's decay epochs
        scaled with it (a cosine or linear schedule spans ``epochs`` by itself)."""
        scale = self.epochs / config.epochs
        decay = sorted({max(1, round(e * scale)) for e in config.decay_epochs})
        warmup = min(config.warmup_epochs, float(self.epochs))
        return config.model_copy(
            update={"epochs": self.epochs, "decay_epochs": decay, "warmup_epochs": warmup}
        )


def read_plan(run: RunFolder) -> BudgetPlan | None:
    raw = read_json(run.budget, tolerate_corrupt=True)
    return BudgetPlan(**raw) if isinstance(raw, dict) else None


def plan_epochs(run: RunFolder, config: Stopping, first_epoch_s: float) -> BudgetPlan:
    """Decide and record the run's epochs: as many as fit in the budget at the first epoch's
    pace (which includes compiling the step, so the estimate errs short), at most
    ``config.epochs`` and at least the one already trained."""
    budget_s = config.time_budget_min * 60
    fits = math.floor(budget_s / max(first_epoch_s, 1e-6))
    plan = BudgetPlan(
        config.time_budget_min, round(first_epoch_s, 3), max(1, min(config.epochs, fits))
    )
    atomic_write_json(run.budget, asdict(plan))
    return plan
