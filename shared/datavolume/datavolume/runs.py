"""One training run's folder, ``<data_root>/runs/<run_id>/``: what it holds and where.

The trainer writes it (every file through ``datavolume.files``: temp file, then rename), the
trainer's API and TensorBoard read it, and people open it::

    config.json                    the run's configuration, every value resolved
    dataset.json                   the dataset version the run reads, and its classes in order
    budget.json                    with a time budget: the epochs it allows (set after epoch 1)
    history.csv, history.json      one row per completed epoch (train/val metrics, LR, time)
    history.png                    loss and top-1/top-5 curves, redrawn each epoch
    checkpoints/epoch-0003.keras   the full model after 3 completed epochs (+ optimizer state)
    checkpoints/best.keras         a copy of the epoch checkpoint with the best val top-1
    checkpoints/best.json          {epoch, val_accuracy, step} of best.keras
    checkpoints/partial.keras      the state when a run was stopped in the middle of an epoch
    checkpoints/latest.json        what a resume starts from: {epoch, step, file, partial, ...}
    tensorboard/train, /validation TensorBoard event files (epoch scalars)
    model.keras                    the final model (uint8 images in, logits out)
    savedmodel/                    the same as a TF SavedModel (signature ``serve``)
    model.onnx                     the same as an ONNX model
    serving/best.onnx              what the predictor serves for checkpoints/best.keras (one per
                                   checkpoint it served, made on first use and tagged with the
                                   file, size and mtime it was made from; epoch ones pruned with
                                   their checkpoint; its own exports clean its temporary files)
    model_card.json, MODEL.md      what the model is, what it was trained on, how well it did
    predictions.txt                test predictions, "test_<i>.JPEG <wnid>" per line
    evaluation.json                val loss/top-1/top-5 of the checkpoint the predictions used,
                                   its top-1 per class and the classes it confuses most
    confusion.csv, per_class.png   that checkpoint's val confusion matrix; its worst classes
    trial.json                     a sweep's trial: its sweep and number (written by the sweep)
    trial-report.json              the trial's metric after its newest epoch (the worker)
    trial-verdict.json             the sweep's answer on that epoch: prune or go on

Imports neither TensorFlow nor Keras (the API process reads these files too).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from datavolume.files import remove_temporaries

CHECKPOINT_SUFFIX = ".keras"


@dataclass(frozen=True)
class RunFolder:
    """The files of one run folder (see the module docstring); ``DataRoot.run(id)`` makes one."""

    root: Path

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
    def savedmodel_temp(self) -> Path:
        """Where a SavedModel is written before it is renamed to :attr:`savedmodel`."""
        return self.root / f".{self.savedmodel.name}.tmp"

    @property
    def onnx(self) -> Path:
        return self.root / "model.onnx"

    @property
    def serving(self) -> Path:
        """The predictor's ONNX exports, one per checkpoint file it served."""
        return self.root / "serving"

    def serving_export(self, model: Path) -> Path:
        """The ONNX export the predictor serves for ``model`` (a checkpoint or model.keras)."""
        return self.serving / f"{Path(model).stem}.onnx"

    @property
    def budget(self) -> Path:
        return self.root / "budget.json"

    @property
    def dataset_record(self) -> Path:
        return self.root / "dataset.json"

    @property
    def card_json(self) -> Path:
        return self.root / "model_card.json"

    @property
    def card_markdown(self) -> Path:
        return self.root / "MODEL.md"

    @property
    def predictions(self) -> Path:
        return self.root / "predictions.txt"

    @property
    def evaluation(self) -> Path:
        return self.root / "evaluation.json"

    @property
    def confusion(self) -> Path:
        return self.root / "confusion.csv"

    @property
    def per_class_png(self) -> Path:
        return self.root / "per_class.png"

    @property
    def trial(self) -> Path:
        return self.root / "trial.json"

    @property
    def trial_report(self) -> Path:
        return self.root / "trial-report.json"

    @property
    def trial_verdict(self) -> Path:
        return self.root / "trial-verdict.json"

    def epoch_checkpoint(self, epoch: int) -> Path:
        """The checkpoint written after ``epoch`` completed epochs (1-based count)."""
        return self.checkpoints / f"epoch-{epoch:04d}{CHECKPOINT_SUFFIX}"

    def make(self) -> None:
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        self.tensorboard.mkdir(parents=True, exist_ok=True)

    def remove_temporaries(self) -> list[str]:
        """Delete what a write cut short left (temp files, a half-exported SavedModel); the
        checkpoints and every complete file stay. Returns what was removed."""
        removed = [*remove_temporaries(self.root), *remove_temporaries(self.checkpoints)]
        partial_export = self.savedmodel_temp
        if partial_export.is_dir():
            shutil.rmtree(partial_export, ignore_errors=True)
            removed.append(partial_export.name)
        return removed
