"""The API side of ``POST /v1/runs/{id}/predict``: the warm predictor process, started on first
use and replaced when it dies, and the bounded queue in front of it (no Keras, TensorFlow, JAX,
ONNX Runtime or NumPy here: the API process never loads them).

- **One predictor process** (``python -m trainer_service.inference.server``, :mod:`.server`)
  keeps the models it serves loaded and batches the requests that arrive together. It is
  started by the first request (that request waits for it: about half a second, plus the
  checkpoint's export on its first use) with the service's settings, CPU only, on a Unix socket
  in a private temporary folder; its standard input is a pipe from this process, so it ends
  when this process ends, however that happens.
- **Replaced when it dies.** A request in flight when it dies (killed, out of memory) gets a
  :class:`ClassificationFailed` (503) that says so; the next request starts a new one.
- **A bounded queue.** At most ``predict_max_queue`` requests are in the predictor (waiting for
  an export, a batch, or running); one more is refused at once with :class:`ClassifierBusy`
  (429), so a burst never piles up behind a busy CPU. A request gets ``predict_timeout_s`` in
  all (an export on first use included), else a 503.
"""

from __future__ import annotations

import asyncio
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer_service.inference import wire
from trainer_service.runs.checkpoints import NoSuchCheckpoint
from trainer_service.settings import Settings

#: The predictor's environment beyond the workers': CPU only, quiet.
PREDICTOR_ENV = {"JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"}
PREDICTOR_MODULE = "trainer_service.inference.server"
#: How long a new predictor process may take to be ready (Python, NumPy, ONNX Runtime).
START_TIMEOUT_S = 60.0
#: Seconds a predictor gets after SIGTERM when the classifier closes.
STOP_GRACE_S = 5.0
_UNSAFE = re.compile(r"[^\w.\- ]")
_NAME_BYTES = 200


@dataclass(frozen=True)
class Upload:
    """One uploaded file: the name the client gave it and its bytes."""

    name: str
    data: bytes


class ClassifierBusy(Exception):
    """The predictor's queue is full; the message says how full, for a person."""


class ClassificationFailed(Exception):
    """The predictor failed, died or ran too long; the message says which, for a person."""


def safe_name(name: str, index: int) -> str:
    """The client's file name, reduced to a harmless base name (what the answer calls it)."""
    base = _UNSAFE.sub("_", Path(name.replace("\\", "/")).name).strip(" .")
    while len(base.encode()) > _NAME_BYTES:
        base = base[:-1]
    return base or f"image-{index + 1}"


@dataclass
class _Process:
    """A started predictor process and its socket."""

    popen: subprocess.Popen
    socket: Path

    def ended(self) -> int | None:
        return self.popen.poll()


class Classifier:
    """The API's handle on the predictor (see the module docstring); thread-safe."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._queue = threading.BoundedSemaphore(settings.predict_max_queue)
        self._starting = threading.Lock()
        self._process: _Process | None = None
        self.starts = 0  # predictor processes started

    def environment(self) -> dict[str, str]:
        return {**os.environ, **self.settings.worker_env(), **PREDICTOR_ENV}

    def command(self, socket: Path) -> list[str]:
        return [sys.executable, "-m", PREDICTOR_MODULE, "--socket", str(socket)]

    async def classify(self, run_id: str, checkpoint: str, uploads: list[Upload]) -> dict[str, Any]:
        """The predictor's answer for ``uploads`` (in their order, named by
        :func:`safe_name`). Raises :class:`ClassifierBusy`, :class:`ClassificationFailed` or
        ``NoSuchCheckpoint``. A coroutine: it waits for the predictor on the event loop."""
        if not self._queue.acquire(blocking=False):
            limit = self.settings.predict_max_queue
            raise ClassifierBusy(
                f"{limit} predict requests are already queued or running, the most "
                "predict_max_queue allows; retry in a moment"
            )
        try:
            header = {
                "op": "classify",
                "run": run_id,
                "checkpoint": checkpoint,
                "names": [safe_name(u.name, i) for i, u in enumerate(uploads)],
                "sizes": [len(u.data) for u in uploads],
            }
            answer = await self._ask(header, b"".join(u.data for u in uploads))
        finally:
            self._queue.release()
        if "error" in answer:
            error = answer["error"]
            if error.get("kind") == "no_checkpoint":
                raise NoSuchCheckpoint(error["message"])
            raise ClassificationFailed(error.get("message") or "the predictor failed")
        return answer["answer"]

    async def stats(self) -> dict[str, Any]:
        """The running predictor's statistics (:mod:`.server`), starting it if needed."""
        return await self._ask({"op": "stats"})

    def predictor_pid(self) -> int | None:
        process = self._process
        return None if process is None or process.ended() is not None else process.popen.pid

    async def _ask(self, header: dict[str, Any], payload: bytes = b"") -> dict[str, Any]:
        process = self._process
        if process is None or process.ended() is not None:
            process = await asyncio.to_thread(self._running)  # starting one blocks: not here
        timeout = self.settings.predict_timeout_s
        try:
            answer, _ = await wire.ask_async(process.socket, header, payload, timeout)
        except TimeoutError:
            raise ClassificationFailed(
                f"the predictor did not answer within predict_timeout_s ({timeout:g} s)"
            ) from None
        except OSError as exc:
            why = await asyncio.to_thread(self._why_it_failed, process, exc)
            raise ClassificationFailed(why) from None
        return answer

    def _why_it_failed(self, process: _Process, exc: OSError) -> str:
        try:
            code = process.popen.wait(timeout=2)  # a killed process's socket closes as it ends
        except subprocess.TimeoutExpired:
            if isinstance(exc, FileNotFoundError | ConnectionRefusedError):
                # running, but its socket is gone (a /tmp cleaner) or refuses: replace it
                self._retire(process)
                return (
                    "the predictor process could not be reached on its socket; it was stopped "
                    "and the next request starts a new one"
                )
            return f"the predictor process did not answer ({type(exc).__name__}: {exc})"
        return (
            f"the predictor process ended ({describe_exit(code)}) while it handled this "
            "request; the next request starts a new one"
        )

    def _running(self) -> _Process:
        """The predictor process, started now if none is running (the next after one died)."""
        process = self._process
        if process is not None and process.ended() is None:
            return process
        with self._starting:
            process = self._process
            if process is not None and process.ended() is None:
                return process
            if process is not None:
                stop(process.popen)  # reaped: closes its pipes
                shutil.rmtree(process.socket.parent, ignore_errors=True)
                print(
                    f"trainer: the predictor process ended ({describe_exit(process.ended())}); "
                    "starting a new one",
                    file=sys.stderr,
                    flush=True,
                )
            self._process = self._start()
            return self._process

    def _start(self) -> _Process:
        folder = Path(tempfile.mkdtemp(prefix="tin-predictor-"))  # mode 0700
        socket = folder / "socket"
        popen = subprocess.Popen(
            self.command(socket),
            env=self.environment(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self.starts += 1
        deadline = time.monotonic() + START_TIMEOUT_S
        line = b""
        while not line.endswith(b"\n") and time.monotonic() < deadline:
            ready, _, _ = select.select([popen.stdout], [], [], deadline - time.monotonic())
            chunk = os.read(popen.stdout.fileno(), 4096) if ready else b""
            if ready and not chunk:
                break  # it ended before it was ready
            line += chunk
        if not line.endswith(b"\n"):
            stop(popen)
            shutil.rmtree(folder, ignore_errors=True)
            raise ClassificationFailed(
                f"the predictor process did not start ({describe_exit(popen.returncode)}; its "
                "error is in the service's log)"
            )
        return _Process(popen, socket)

    def close(self) -> None:
        """Stop the predictor process (it also ends by itself when this process ends)."""
        if self._process is not None:
            self._retire(self._process)

    def _retire(self, process: _Process) -> None:
        with self._starting:
            if self._process is process:
                self._process = None
        stop(process.popen)
        shutil.rmtree(process.socket.parent, ignore_errors=True)


def stop(popen: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after :data:`STOP_GRACE_S`."""
    if popen.poll() is None:
        popen.terminate()
        try:
            popen.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()
    for pipe in (popen.stdin, popen.stdout):
        if pipe is not None:
            pipe.close()


def describe_exit(code: int | None) -> str:
    """An exit status for people: "killed by SIGKILL", "exit 1", "still running"."""
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit {code}"
