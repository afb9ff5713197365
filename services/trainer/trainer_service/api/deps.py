"""FastAPI dependencies as named ``Annotated`` aliases (overridable in tests)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from jobkit.service import RunnerDep, StoreDep, get_app_settings, get_runner, get_store
from trainer_service.config import Settings

SettingsDep = Annotated[Settings, Depends(get_app_settings)]

__all__ = ["RunnerDep", "SettingsDep", "StoreDep", "get_runner", "get_store"]
