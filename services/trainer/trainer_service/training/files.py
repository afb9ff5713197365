"""A run's folder on the volume and the atomic file writes everything in it goes through.

<data_root>/runs/<run_id>/
  config.json                  the TrainConfig as accepted
  history.csv, history.json    one row per completed epoch (train/val metrics, LR, time, images/s)
  checkpoints/epoch-0003.keras full model after 3 completed epochs (weights + optimizer state)
  checkpoints/best.keras       copy of the epoch checkpoint with the best val accuracy (+ best.json)
  checkpoints/partial.keras    state saved when a run was stopped in the middle of an epoch
  checkpoints/latest.json      what a resume starts from: {epoch, step, file, partial, ...}
  tensorboard/train, /validation   TensorBoard event files (epoch scalars)
  model.keras, savedmodel/     the final model (.keras; SavedModel on the TensorFlow backend)
  predictions.txt              test predictions, "test_<i>.JPEG <wnid>" per line
  evaluation.json              val loss/top-1/top-5 of the checkpoint used for predictions

Imports neither TensorFlow nor Keras (the API process reads these files too).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobkit.files import replacing

RUNS_DIR = "runs"
CHECKPOINT_SUFFIX = ".keras"


def runs_root(data_root: Path) -> Path:
    """Where run folders live on the shared volume."""
    return Path(data_root) / RUNS_DIR


@dataclass(frozen=True)
class RunPaths:
    """The files of one run folder (see the module docstring)."""

    root: Path

    @classmethod
    def for_run(cls, data_root: Path, run_id: str) -> RunPaths:
        if not run_id.isalnum():
            raise ValueError(f"bad run id {run_id!r}")
        return cls(runs_root(data_root) / run_id)

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def history_csv(self) -> Path:
        return self.root / "history.csv"

    @property
    def history_json(self) -> Path:
        return self.root / "history.json"

    @property
    def history_png(self) -> Path:
        return self.root / "history.png"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def latest(self) -> Path:
        return self.checkpoints / "latest.json"

    @property
    def best(self) -> Path:
        return self.checkpoints / f"best{CHECKPOINT_SUFFIX}"

    @property
    def best_json(self) -> Path:
        return self.checkpoints / "best.json"

    @property
    def partial(self) -> Path:
        return self.checkpoints / f"partial{CHECKPOINT_SUFFIX}"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    @property
    def model(self) -> Path:
        return self.root / f"model{CHECKPOINT_SUFFIX}"

    @property
    def savedmodel(self) -> Path:
        return self.root / "savedmodel"

    @property
    def predictions(self) -> Path:
        return self.root / "predictions.txt"

    @property
    def evaluation(self) -> Path:
        return self.root / "evaluation.json"

    def epoch_checkpoint(self, epoch: int) -> Path:
        """The checkpoint written after ``epoch`` completed epochs (1-based count)."""
        return self.checkpoints / f"epoch-{epoch:04d}{CHECKPOINT_SUFFIX}"

    def make(self) -> None:
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        self.tensorboard.mkdir(parents=True, exist_ok=True)


def read_json(path: Path) -> Any | None:
    """The JSON in ``path``, or None if the file does not exist."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None


def atomic_save_model(model, path: Path) -> None:
    """``model.save`` (a ``.keras`` zip with the optimizer state) under a temp name, then rename.

    A reader (or a resume after SIGKILL) never sees half a checkpoint.
    """
    with replacing(path, CHECKPOINT_SUFFIX) as tmp:  # Keras insists on the .keras suffix
        model.save(tmp)


def atomic_copy(source: Path, dest: Path) -> None:
    """Copy ``source`` to ``dest`` through a temp file and a rename."""
    with replacing(dest, Path(dest).suffix) as tmp:
        shutil.copyfile(source, tmp)
