"""How a run is presented by the routes: the job, with its training status, checkpoints,
exports and dataset version, all read from the run folder (no Keras)."""

from __future__ import annotations

from typing import Any

from datavolume.files import read_json
from datavolume.layout import DataRoot
from datavolume.runs import RunFolder
from jobkit.models import JobPublic, JobState
from trainer_service.api.schemas import CheckpointInfo, RunPublic, SweepTrial, TrainingStatus
from trainer_service.runs import checkpoints, trial
from trainer_service.runs.dataset import dataset_status
from trainer_service.runs.history import read_history


def training_status(job: JobPublic, run: RunFolder) -> TrainingStatus:
    metrics: dict[str, Any] = job.metrics or {}
    latest = checkpoints.read_latest(run)
    history = read_history(run)
    running = job.state == JobState.RUNNING
    return TrainingStatus(
        epoch=metrics.get("epoch"),
        epochs=metrics.get("epochs", job.request.get("epochs")),
        step=metrics.get("step"),
        steps_per_epoch=metrics.get("steps_per_epoch"),
        completed_epochs=latest.epoch if latest else 0,
        images_per_s=metrics.get("images_per_s"),
        eta_s=metrics.get("eta_s") if running else None,
        learning_rate=metrics.get("learning_rate"),
        last_epoch=history[-1] if history else None,
        budget=read_json(run.budget, tolerate_corrupt=True),
    )


def run_public(job: JobPublic, root: DataRoot) -> RunPublic:
    """The job with its training status and checkpoints (read from the run folder)."""
    run = root.run(job.id)
    return RunPublic(
        **job.model_dump(),
        run_dir=root.relative(run.root),
        training=training_status(job, run),
        checkpoints=[CheckpointInfo(**c) for c in checkpoints.list_checkpoints(run)],
        exports=exports(run, root),
        dataset=dataset_status(run, root),
        model_card=root.relative(run.card_markdown) if run.card_markdown.is_file() else None,
        trial=SweepTrial(sweep=link.sweep, number=link.number)
        if (link := trial.read_link(run))
        else None,
    )


def exports(run: RunFolder, root: DataRoot) -> dict[str, str]:
    """The final model's files that exist, by format, relative to the data root."""
    files = {"keras": run.model, "savedmodel": run.savedmodel, "onnx": run.onnx}
    return {name: root.relative(path) for name, path in files.items() if path.exists()}
