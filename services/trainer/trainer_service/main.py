"""The FastAPI application: ``create_app(settings)``, and ``app`` for uvicorn.

Built by ``jobkit.service.create_service_app``: the lifespan opens the run database on the
volume, marks runs whose worker is gone as ``interrupted``, and starts the runner: one training
per device slot (one per GPU, or ``max_concurrent_jobs`` on a CPU host), the others wait in a
FIFO queue; each run trains in its own worker process (``python -m jobkit.worker ...
trainer_service.jobs.training:run_training``) with this app's settings, ``KERAS_BACKEND`` and its
own GPUs in its environment. Shutdown stops the runner (running
workers get SIGTERM, save a checkpoint and end as interrupted). ``POST /v1/runs/{id}/predict``
takes image uploads (multipart, up to ``predict_max_bytes``) and classifies them in the warm
predictor process, on the CPU. Beside the runner, the service runs its share of every sweep on
the volume (``trainer_service.sweeps``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import FastAPI

from jobkit.service import create_service_app
from trainer_service.api import classify, recipes, report, runs, sweeps
from trainer_service.jobs import TRAINING_KIND, TRAINING_TARGET
from trainer_service.settings import Settings, get_settings
from trainer_service.sweeps.controller import SweepController


@contextmanager
def sweeping(app: FastAPI) -> Iterator[None]:
    """The sweeps this service runs its share of, while it serves (``app.state.sweeps``)."""
    state = app.state
    state.sweeps = SweepController(state.settings, state.store, state.runner)
    state.sweeps.start()
    try:
        yield
    finally:
        state.sweeps.stop()


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; settings default to the environment's (read at start-up, not import)."""
    return create_service_app(
        settings=settings,
        get_settings=get_settings,
        title="Trainer service",
        summary="Trains the bottleneck ResNet on prepared Tiny ImageNet shards.",
        kind=TRAINING_KIND,
        target=TRAINING_TARGET,
        routers=[runs.router, runs.jobs_router, recipes.router, report.router, sweeps.router],
        folders=lambda s: (s.volume.runs,),
        running_noun="run(s) training",
        upload_routers=[classify.router],
        upload_limit=lambda s: s.predict_max_bytes,
        problems=classify.PROBLEMS,
        beside_runner=sweeping,
    )


app = create_app()
