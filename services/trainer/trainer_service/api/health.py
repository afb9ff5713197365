"""``GET /healthz`` (liveness) and ``GET /readyz`` (runner started, volume writable)."""

from __future__ import annotations

import os
from collections.abc import Callable

from fastapi import APIRouter, FastAPI

from jobkit.api import health_router


def readiness(app: FastAPI) -> Callable[[], tuple[bool, str]]:
    def check() -> tuple[bool, str]:
        state = app.state
        store = getattr(state, "store", None)
        runner = getattr(state, "runner", None)
        if store is None or runner is None:
            return False, "the job runner is not started"
        data_root = state.settings.data_root
        if not os.access(data_root, os.W_OK):
            return False, f"the data root {data_root} is not writable"
        running = store.count_running()
        return True, f"data root {data_root} writable; {running} run(s) training"

    return check


def router_for(app: FastAPI) -> APIRouter:
    return health_router(readiness(app))
