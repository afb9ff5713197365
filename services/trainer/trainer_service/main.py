"""The FastAPI application: ``create_app(settings)``, and ``app`` for uvicorn.

The lifespan opens the run database on the volume, marks runs whose worker is gone as
``interrupted``, and starts the runner: one training at a time (``max_concurrent_jobs``), the
others wait in a FIFO queue; each run trains in its own worker process
(``python -m jobkit.worker ... trainer_service.jobs:run_training``) with this app's settings and
``KERAS_BACKEND`` in its environment. Shutdown stops the runner (running workers get SIGTERM,
save a checkpoint and end as interrupted).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from jobkit.auth import bearer_token_dependency
from jobkit.problems import install_problem_handlers
from jobkit.runner import JobRunner
from jobkit.store import JobStore
from trainer_service.api import health, report, runs
from trainer_service.config import Settings, get_settings, settings_env
from trainer_service.jobs import JOB_KIND, JOB_TARGET
from trainer_service.training.files import runs_root


def start_runner(app: FastAPI, settings: Settings) -> None:
    for folder in (settings.state_dir, runs_root(settings.data_root)):
        folder.mkdir(parents=True, exist_ok=True)
    store = JobStore(settings.jobs_db, kinds=[JOB_KIND])
    runner = JobRunner(
        store,
        targets={JOB_KIND: JOB_TARGET},
        log_dir=settings.logs_dir,
        max_concurrent=settings.max_concurrent_jobs,
        cancel_grace_s=settings.cancel_grace_s,
        env=settings_env(settings),
    )
    app.state.store, app.state.runner = store, runner
    runner.start()  # marks orphaned running runs interrupted first


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; settings default to the environment's (read at start-up, not import)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if app.state.settings is None:
            app.state.settings = get_settings()
        start_runner(app, app.state.settings)
        try:
            yield
        finally:
            app.state.runner.stop()

    app = FastAPI(
        title="Trainer service",
        version="1.0.0",
        summary="Trains the bottleneck ResNet on prepared Tiny ImageNet shards.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.store = app.state.runner = None
    install_problem_handlers(app)
    require_token = Depends(bearer_token_dependency(lambda: app.state.settings or get_settings()))
    app.include_router(health.router_for(app))
    app.include_router(runs.router, dependencies=[require_token])
    app.include_router(report.router, dependencies=[require_token])
    return app


app = create_app()
