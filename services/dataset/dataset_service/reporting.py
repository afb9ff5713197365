"""The progress interface a prepare reports to: a jobkit ``JobContext`` or a plain logger.

:func:`dataset_service.prepare.prepare` takes any object with these members, so the same code
runs as a job (progress lands in the job database) or from a script or test (it is logged).
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Protocol


class Reporter(Protocol):
    log: logging.Logger

    def phase(self, name: str, total: int | None = None, unit: str = "items") -> None: ...

    def progress(self, done: int, total: int | None = None) -> None: ...

    def metrics(self, values: dict[str, Any]) -> None: ...

    def check_stop(self) -> None: ...

    @property
    def should_stop(self) -> bool: ...


class StopRequested(Exception):
    """Raised by :meth:`LogReporter.check_stop` once :meth:`LogReporter.request_stop` was called."""


class LogReporter:
    """A reporter for use without jobs: logs phases, keeps the latest progress and metrics."""

    def __init__(self, log: logging.Logger | None = None) -> None:
        self.log = log or logging.getLogger("dataset_service.prepare")
        self.phases: list[str] = []
        self.done = 0
        self.total: int | None = None
        self.latest_metrics: dict[str, Any] = {}
        self._stop = threading.Event()

    def phase(self, name: str, total: int | None = None, unit: str = "items") -> None:
        self.phases.append(name)
        self.done, self.total = 0, total
        self.log.info("phase %s%s", name, f" ({total} {unit})" if total is not None else "")

    def progress(self, done: int, total: int | None = None) -> None:
        self.done = done
        if total is not None:
            self.total = total

    def metrics(self, values: dict[str, Any]) -> None:
        self.latest_metrics.update(values)

    @property
    def should_stop(self) -> bool:
        return self._stop.is_set()

    def request_stop(self) -> None:
        self._stop.set()

    def check_stop(self) -> None:
        if self._stop.is_set():
            raise StopRequested("stop requested")
