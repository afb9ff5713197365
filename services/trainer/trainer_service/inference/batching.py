"""Requests that arrive together share one model run (no Keras here).

The predictor's one :class:`Batcher` thread runs every model: one batch at a time, so the CPU
threads it uses stay what ``predict_threads`` allows. A batch starts with the oldest waiting
request and takes, in arrival order, the other waiting requests for the same model, up to
``max_batch`` images (a request is never split, so one larger than that runs alone). When the
first request finds fewer images waiting and other requests are on their way (announced: their
images are being decoded), it waits up to ``wait_s`` after its arrival for them to join, as TF
Serving's ``batch_timeout_micros`` and Triton's ``max_queue_delay_microseconds`` do; a request
alone waits for nothing, and requests that queued while the previous batch ran have waited
already and go at once. Each request gets its own rows of the logits back.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(eq=False)
class _Request:
    model: Any
    images: np.ndarray
    arrived: float
    done: threading.Event = field(default_factory=threading.Event)
    logits: np.ndarray | None = None
    error: BaseException | None = None


class Batcher:
    """Runs ``run(model, images) -> logits`` on batches of requests (module docstring)."""

    def __init__(
        self,
        run: Callable[[Any, np.ndarray], np.ndarray],
        max_batch: int,
        wait_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._run = run
        self.max_batch = max_batch
        self.wait_s = wait_s
        self._clock = clock
        self._queue: deque[_Request] = deque()
        self._changed = threading.Condition()
        self._coming = 0  # announced requests not queued yet
        self.batches = 0  # model runs
        self.images = 0  # images classified
        self.largest = 0  # images in the largest batch
        self._thread = threading.Thread(target=self._loop, name="batcher", daemon=True)
        self._thread.start()

    def announce(self) -> None:
        """A request is on its way (:meth:`logits` with ``announced=True`` will follow, or
        :meth:`withdraw`): a batch's first request may wait for it."""
        with self._changed:
            self._coming += 1

    def withdraw(self) -> None:
        """An announced request will not come after all."""
        with self._changed:
            self._coming -= 1
            self._changed.notify()

    def logits(
        self,
        model: Any,
        images: np.ndarray,
        timeout_s: float | None = None,
        *,
        announced: bool = False,
    ) -> np.ndarray:
        """``model``'s logits of ``images`` (``[n, ...]``), computed in a batch with the other
        requests for it that arrive together; ``TimeoutError`` after ``timeout_s``."""
        request = _Request(model, images, self._clock())
        with self._changed:
            self._queue.append(request)
            self._coming -= announced
            self._changed.notify()
        if not request.done.wait(timeout_s):
            raise TimeoutError(f"the model did not answer within {timeout_s:g} s")
        if request.error is not None:
            raise request.error
        assert request.logits is not None
        return request.logits

    def waiting(self) -> int:
        with self._changed:
            return len(self._queue)

    def _loop(self) -> None:
        while True:
            batch = self._next_batch()
            images = batch[0].images if len(batch) == 1 else np.concatenate(
                [r.images for r in batch]
            )  # fmt: skip
            try:
                logits = self._run(batch[0].model, images)
            except Exception as exc:  # each request of the batch answers with it
                for request in batch:
                    request.error = exc
            else:
                start = 0
                for request in batch:
                    request.logits = logits[start : start + len(request.images)]
                    start += len(request.images)
            self.batches += 1
            self.images += len(images)
            self.largest = max(self.largest, len(images))
            for request in batch:
                request.done.set()

    def _next_batch(self) -> list[_Request]:
        with self._changed:
            while not self._queue:
                self._changed.wait()
            first = self._queue[0]
            deadline = first.arrived + self.wait_s
            while (
                self._coming > 0
                and (now := self._clock()) < deadline
                and self._waiting_for(first) < self.max_batch
            ):
                self._changed.wait(deadline - now)
            batch, size = [], 0
            for request in list(self._queue):
                if request.model is first.model and (
                    not batch or size + len(request.images) <= self.max_batch
                ):
                    batch.append(request)
                    size += len(request.images)
                    self._queue.remove(request)
            return batch

    def _waiting_for(self, first: _Request) -> int:
        return sum(len(r.images) for r in self._queue if r.model is first.model)
