"""One sweep's folder, ``<data_root>/sweeps/<name>/``, and the services' leases beside them.

The trainer services write them (every file through ``datavolume.files`` or Optuna's own
journal), the trainer's API reads them, people open them::

    sweep.json                     the sweep as it was asked (the body of POST /v1/sweeps)
    study.journal                  the Optuna study (journal storage; with a database URL in
                                   the settings the study lives there instead)
    study.journal.lock, ask.lock   Optuna's file locks: the journal's, and the one held while a
                                   service asks for a trial
    plot.png                       the best value over the trials, and which fields mattered

    <data_root>/sweeps/.hosts/<instance>   a trainer service's lease: its modification time is
                                           when it last said it was alive

The trials are ordinary runs (``runs/<id>/``, ``datavolume.runs``), linked to their sweep by
their ``trial.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SweepFolder:
    """The files of one sweep folder (see the module docstring); ``DataRoot.sweep(name)``."""

    root: Path

    @property
    def spec(self) -> Path:
        return self.root / "sweep.json"

    @property
    def journal(self) -> Path:
        return self.root / "study.journal"

    @property
    def ask_lock(self) -> Path:
        """The ask lock's name: Optuna's lock makes ``ask.lock`` beside it while held."""
        return self.root / "ask"

    @property
    def plot(self) -> Path:
        return self.root / "plot.png"
