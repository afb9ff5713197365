"""The FastAPI application: ``create_app(settings)``, and ``app`` for uvicorn.

Built by ``jobkit.service.create_service_app``: the lifespan opens the job store on the volume,
marks jobs whose worker is gone as ``interrupted`` and starts the runner (worker processes run
``prepare:run_prepare`` with this app's settings in their environment); shutdown stops it.
"""

from __future__ import annotations

from fastapi import FastAPI

from dataset_service.api import datasets, jobs
from dataset_service.prepare import JOB_KIND
from dataset_service.settings import Settings, get_settings
from jobkit.service import create_service_app

JOB_TARGET = "dataset_service.prepare:run_prepare"


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; settings default to the environment's (read at start-up, not import)."""
    return create_service_app(
        settings=settings,
        get_settings=get_settings,
        title="Dataset service",
        summary="Turns the tiny-imagenet-200 archive into sharded TFRecords on the shared volume.",
        kind=JOB_KIND,
        target=JOB_TARGET,
        routers=[jobs.router, jobs.jobkit_router, datasets.router],
        folders=lambda s: (s.volume.raw, s.volume.datasets),
    )


app = create_app()
