"""The job function the jobkit worker runs for a training run: ``run_training(ctx)``.

The run id is the job id and the run folder ``<data_root>/runs/<id>``. There is no separate
"resume" job: a run whose folder already has a checkpoint resumes from it (the resume route puts
the same job back in the queue), so a retried or restarted job never starts over.
"""

from __future__ import annotations

from pydantic import ValidationError

import trainer_service  # noqa: F401  (sets the TensorFlow environment before it is imported)
from jobkit.errors import JobFailed
from trainer_service.config import get_settings
from trainer_service.training.config import TrainConfig
from trainer_service.training.files import RunPaths

JOB_KIND = "train"
JOB_TARGET = "trainer_service.jobs:run_training"


def run_training(ctx) -> None:
    """Train (or resume) the run ``ctx.job_id`` with the config in ``ctx.request``."""
    settings = get_settings()
    try:
        config = TrainConfig.model_validate(ctx.request)
    except ValidationError as exc:
        raise JobFailed(f"invalid run config: {exc}", "invalid_input") from exc
    paths = RunPaths.for_run(settings.data_root, ctx.job_id)
    ctx.phase("setup")
    with ctx.interruptible():  # a cancel ends the (slow) imports at once
        from trainer_service.training.loop import train  # imports Keras and TensorFlow

    result = train(config, paths.root, settings.data_root, ctx)
    ctx.result(result)
