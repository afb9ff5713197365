"""A training run from start to end, what the worker runs: ``run_training(ctx)``.

:func:`train_run` trains (or resumes: :func:`trainer_service.engine.train.train`), then, if the
run was not stopped, exports the final model (:mod:`trainer_service.inference.export`, in a
process of its own with Keras on TensorFlow) and writes its model card
(:mod:`trainer_service.runs.card`). The export is a step of the job rather than of the engine:
it uses what training left (``model.keras``), not the training itself, and the same export
serves a trained run again (``python -m trainer_service.inference.export``).

The run id is the job id and the run folder ``<data_root>/runs/<id>``. There is no separate
"resume" job: a run whose folder already has a checkpoint resumes from it (the resume route puts
the same job back in the queue), so a retried or restarted job never starts over.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from datavolume.runs import RunFolder
from jobkit.context import LocalContext
from jobkit.errors import JobFailed
from trainer_service import TENSORFLOW_ENV
from trainer_service.runs.config import TrainConfig
from trainer_service.settings import get_settings

if TYPE_CHECKING:  # the engine imports Keras: the worker imports it after TENSORFLOW_ENV is set
    from trainer_service.engine.train import TrainResult


@dataclass
class RunResult:
    """What the job records as the run's result: the training's, the exports, the model card."""

    training: TrainResult
    savedmodel: str | None = None
    onnx: str | None = None
    model_card: str | None = None

    def as_dict(self) -> dict[str, Any]:
        exports = {"savedmodel": self.savedmodel, "onnx": self.onnx}
        return {**self.training.as_dict(), **exports, "model_card": self.model_card}


def run_training(ctx) -> None:
    """Train (or resume) the run ``ctx.job_id`` with the config in ``ctx.request``."""
    settings = get_settings()
    try:
        config = TrainConfig.model_validate(ctx.request)
    except ValidationError as exc:
        raise JobFailed(f"invalid run config: {exc}", "invalid_input") from exc
    run = settings.volume.run(ctx.job_id)
    ctx.phase("setup")
    for name, value in TENSORFLOW_ENV.items():  # before TensorFlow is first imported
        os.environ.setdefault(name, value)
    with ctx.interruptible():  # a cancel ends the (slow) imports at once
        import trainer_service.engine.train  # noqa: F401  (Keras and TensorFlow)
    ctx.result(train_run(config, run.root, settings.data_root, ctx).as_dict())


def train_run(config: TrainConfig, run_dir: Path, data_root: Path, ctx=None) -> RunResult:
    """Train, then export and describe the model (not after a stop: a resume finishes it; nor
    for a trial its sweep pruned)."""
    from trainer_service.engine.train import train  # Keras and TensorFlow
    from trainer_service.inference.export import export_in_subprocess
    from trainer_service.runs.card import write_model_card

    ctx = ctx or LocalContext(logging.getLogger("trainer_service.jobs"))
    result = RunResult(train(config, run_dir, data_root, ctx))
    if result.training.stopped or result.training.pruned:
        return result
    ctx.phase("export")
    run = RunFolder(Path(run_dir))
    if formats := config.exports.formats:
        exported = export_in_subprocess(run, formats)
        for name, error in exported.pop("errors", {}).items():
            ctx.log.warning("%s export failed: %s", name, error)
        result.savedmodel, result.onnx = exported.get("savedmodel"), exported.get("onnx")
    exports = {"savedmodel": result.savedmodel, "onnx": result.onnx}
    backend = result.training.runtime["backend"]
    write_model_card(run, exports, backend, result.training.stopped_early)
    result.model_card = run.card_json.name
    return result
