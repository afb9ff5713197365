"""FastAPI dependencies as named ``Annotated`` aliases (overridable in tests)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from jobkit.runner import JobRunner
from jobkit.store import JobStore
from trainer_service.config import Settings


def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_store(request: Request) -> JobStore:
    return request.app.state.store


def get_runner(request: Request) -> JobRunner:
    return request.app.state.runner


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
StoreDep = Annotated[JobStore, Depends(get_store)]
RunnerDep = Annotated[JobRunner, Depends(get_runner)]
