"""A run that is a sweep's trial: its link to the sweep, and the exchange after each epoch that
lets the sweep prune it at that epoch's end (no Keras: the worker and the service both use it).

Three small files in the run folder (``datavolume.runs.RunFolder``), each written whole (temp
file, then rename):

- ``trial.json`` (the sweep, when it makes the run): which sweep and trial, the history column
  the sweep scores, and how long the worker waits for a verdict;
- ``trial-report.json`` (the worker, after each complete epoch): ``{"epoch", "value"}``;
- ``trial-verdict.json`` (the sweep, once it has told Optuna that value):
  ``{"epoch", "prune"}``.

After writing its report the worker waits for the verdict on that epoch (at most
``verdict_wait_s``: a sweep whose service is down does not hold a run forever) and, told to
prune, ends the run at that epoch's end, its checkpoint saved. Only the newest epoch is
exchanged: the worker waits for each verdict before its next epoch, and the service reads the
earlier epochs' values from the run's history.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from datavolume.files import atomic_write_json, read_json
from datavolume.runs import RunFolder

POLL_S = 0.1


@dataclass(frozen=True)
class TrialLink:
    """What ``trial.json`` says: the run is trial ``number`` of sweep ``sweep``."""

    sweep: str
    number: int
    metric: str  #: the history column (and Keras log key) the sweep scores
    verdict_wait_s: float


def link(run: RunFolder, trial: TrialLink) -> None:
    atomic_write_json(run.trial, asdict(trial))


def read_link(run: RunFolder) -> TrialLink | None:
    raw = read_json(run.trial, tolerate_corrupt=True)
    return TrialLink(**raw) if isinstance(raw, dict) else None


def report(run: RunFolder, epoch: int, value: float) -> None:
    atomic_write_json(run.trial_report, {"epoch": epoch, "value": value})


def read_report(run: RunFolder) -> tuple[int, float] | None:
    raw = read_json(run.trial_report, tolerate_corrupt=True)
    return (int(raw["epoch"]), float(raw["value"])) if isinstance(raw, dict) else None


def give_verdict(run: RunFolder, epoch: int, prune: bool) -> None:
    atomic_write_json(run.trial_verdict, {"epoch": epoch, "prune": bool(prune)})


def read_verdict(run: RunFolder) -> tuple[int, bool] | None:
    raw = read_json(run.trial_verdict, tolerate_corrupt=True)
    return (int(raw["epoch"]), bool(raw["prune"])) if isinstance(raw, dict) else None


def await_verdict(
    run: RunFolder,
    epoch: int,
    wait_s: float,
    give_up: Callable[[], bool] = lambda: False,
    clock: Callable[[], float] = time.monotonic,
) -> bool | None:
    """The sweep's verdict on ``epoch`` (True: prune), or None if none came within ``wait_s``
    or ``give_up()`` turned true (a stop request)."""
    deadline = clock() + wait_s
    while True:
        verdict = read_verdict(run)
        if verdict is not None and verdict[0] == epoch:
            return verdict[1]
        if clock() >= deadline or give_up():
            return None
        time.sleep(POLL_S)
