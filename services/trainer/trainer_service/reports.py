"""The model report (``trainer_service.model.report.model_report``), cached per model shape.

Building the full ResNet takes seconds and a memory measurement trains one step, so each
(width, levels, classes, batch, memory) is computed once per process, one at a time.
"""

from __future__ import annotations

import threading
from typing import Any

_cache: dict[tuple, dict[str, Any]] = {}
_lock = threading.Lock()


def cached_report(
    filters: int, levels: tuple[int, ...], classes: int, batch_size: int, memory: bool
) -> dict[str, Any]:
    key = (filters, tuple(levels), classes, batch_size, memory)
    with _lock:  # Keras model building is not meant to run in parallel threads
        if key not in _cache:
            from trainer_service.model.report import model_report

            _cache[key] = model_report(filters, levels, classes, batch_size, measure_memory=memory)
        return dict(_cache[key])


def clear() -> None:
    with _lock:
        _cache.clear()
