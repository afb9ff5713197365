"""The job function the jobkit worker runs for a training run: ``run_training(ctx)``.

The run id is the job id and the run folder ``<data_root>/runs/<id>``. There is no separate
"resume" job: a run whose folder already has a checkpoint resumes from it (the resume route puts
the same job back in the queue), so a retried or restarted job never starts over.
"""

from __future__ import annotations

import os

from pydantic import ValidationError

from jobkit.errors import JobFailed
from trainer_service.runs.config import TrainConfig
from trainer_service.settings import TENSORFLOW_ENV, get_settings

JOB_KIND = "train"
JOB_TARGET = "trainer_service.jobs:run_training"


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
        from trainer_service.engine.train import train  # imports Keras and TensorFlow

    result = train(config, run.root, settings.data_root, ctx)
    ctx.result(result)
