"""The FastAPI application: ``create_app(settings)``, and ``app`` for uvicorn.

The lifespan opens the job store on the volume, marks jobs whose worker is gone as
``interrupted``, and starts the runner (worker processes run ``prepare:run_prepare`` with this
app's settings in their environment); shutdown stops the runner.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from dataset_service.api import datasets, health, jobs
from dataset_service.config import Settings, get_settings, settings_env
from dataset_service.paths import raw_root
from dataset_service.prepare import JOB_KIND
from jobkit.auth import bearer_token_dependency
from jobkit.problems import install_problem_handlers
from jobkit.runner import JobRunner
from jobkit.store import JobStore
from shard_format.schema import datasets_root

JOB_TARGET = "dataset_service.prepare:run_prepare"


def start_runner(app: FastAPI, settings: Settings) -> None:
    for folder in (
        settings.state_dir,
        raw_root(settings.data_root),
        datasets_root(settings.data_root),
    ):
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
    runner.start()  # marks orphaned running jobs interrupted first


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
            # Blocks up to cancel_grace_s while workers stop: keep it off the event loop.
            await asyncio.to_thread(app.state.runner.stop)

    app = FastAPI(
        title="Dataset service",
        version="1.0.0",
        summary="Turns the tiny-imagenet-200 archive into sharded TFRecords on the shared volume.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.store = app.state.runner = None
    install_problem_handlers(app)
    require_token = Depends(bearer_token_dependency(lambda: app.state.settings or get_settings()))
    app.include_router(health.router_for(app))
    app.include_router(jobs.router, dependencies=[require_token])
    app.include_router(jobs.jobkit_router, dependencies=[require_token])
    app.include_router(datasets.router, dependencies=[require_token])
    return app


app = create_app()
