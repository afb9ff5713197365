"""What a job function is handed: a context to report phases, progress, metrics and its result
to, and to learn that it was asked to stop.

:class:`Context` is what every context shares; the worker's ``jobkit.worker.JobContext`` records
into the job store, :class:`LocalContext` keeps the latest values in attributes for code run
outside a job (scripts, benchmarks, tests). Code that only reports (a prepare, a training run)
imports this module, not the worker's.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from typing import Any

from jobkit.errors import JobCancelled


class Context:
    """What both contexts share: starting a phase, and the stop request (a flag, and sections
    a stop interrupts at once)."""

    _stop: threading.Event
    log: logging.Logger

    def phase(
        self,
        name: str,
        total: int | None = None,
        unit: str = "items",
        metrics: dict[str, Any] | None = None,
    ) -> None:
        """Start a named phase (e.g. "download", "write", "epoch 3"); resets progress to 0.

        ``metrics`` are written with the phase, at once (not throttled): what the phase's
        name says and what the metrics say change together.
        """
        self._start_phase(name, total, unit, metrics)
        self.log.info("phase %s%s", name, f" ({total} {unit})" if total is not None else "")

    def _start_phase(self, name: str, total: int | None, unit: str, metrics: dict | None) -> None:
        raise NotImplementedError

    @property
    def should_stop(self) -> bool:
        """True once the worker got SIGTERM (cancel or shutdown). Stop soon, then return or
        raise ``JobCancelled`` (the runner SIGKILLs after the grace period)."""
        return self._stop.is_set()

    def check_stop(self) -> None:
        """Raise ``JobCancelled`` if a stop was requested."""
        if self._stop.is_set():
            raise JobCancelled("stop requested")

    def request_stop(self) -> None:
        """Set the stop flag (what the SIGTERM handler does)."""
        self._stop.set()

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        """A section with nothing to save (imports, building a model): a SIGTERM inside it
        raises ``JobCancelled`` at once instead of waiting for the next ``check_stop``.

        Only the main thread receives signals; elsewhere (a job run in a test thread) the
        section checks the flag on entry and exit only.
        """
        self.check_stop()
        main = threading.current_thread() is threading.main_thread()
        previous = signal.getsignal(signal.SIGTERM) if main else None

        def stop_now(signum, frame):
            self._stop.set()
            raise JobCancelled("stop requested")

        if main:
            signal.signal(signal.SIGTERM, stop_now)
        try:
            yield
        finally:
            if main:
                signal.signal(signal.SIGTERM, previous)
        self.check_stop()


class LocalContext(Context):
    """The job context outside a job (scripts, benchmarks, tests): the same members as
    :class:`JobContext`, with phases logged and the latest progress, metrics and result kept
    in attributes instead of a job database."""

    def __init__(self, log: logging.Logger | None = None, request: dict | None = None) -> None:
        self.job_id = "local"
        self.request = request or {}
        self.log = log or logging.getLogger("jobkit.local")
        self.phases: list[str] = []
        self.done = 0
        self.total: int | None = None
        self.latest_metrics: dict[str, Any] = {}
        self.latest_result: dict[str, Any] | None = None
        self._stop = threading.Event()

    def _start_phase(self, name: str, total: int | None, unit: str, metrics: dict | None) -> None:
        self.phases.append(name)
        self.done, self.total = 0, total
        self.latest_metrics.update(metrics or {})

    def progress(self, done: int, total: int | None = None) -> None:
        self.done = done
        if total is not None:
            self.total = total

    def metrics(self, values: dict[str, Any]) -> None:
        self.latest_metrics.update(values)

    def result(self, values: dict[str, Any]) -> None:
        self.latest_result = dict(values)

    def flush(self) -> None:
        pass
