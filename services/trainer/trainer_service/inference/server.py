"""``python -m trainer_service.inference.server --socket PATH``: the predictor process.

The trainer's API process starts it on the first predict request (:mod:`.classifier`) and talks
to it over the Unix socket ``PATH`` (:mod:`.wire`): a :class:`~.predictor.Predictor` that keeps
the models it serves loaded between requests, with the service's ``predict_*`` settings (read
from the ``TRAINER_*`` variables the API passes on, as a worker reads them). No Keras,
TensorFlow or JAX in this process: ONNX Runtime and NumPy (it is a few hundred MiB at most,
where a Keras process is 800); only the export it starts for a checkpoint's first use imports
Keras, on TensorFlow, in a process of its own.

- **Below training.** Before anything else it lowers its priority to ``predict_nice`` (every
  thread it starts, ONNX Runtime's and the export process included, inherits it); ONNX Runtime
  runs on ``predict_threads`` threads that sleep between batches; no GPU is visible to it.
- **One connection per request**, each in a thread of its own: it reads the request, decodes its
  images, waits for its batch (:mod:`.batching`) and writes the answer. Requests: ``{"op":
  "classify", "run", "checkpoint", "names", "sizes"}`` with the images as payload, answered
  ``{"answer": {...}}`` or ``{"error": {"kind": "no_checkpoint" | "failed", "message"}}``;
  ``{"op": "stats"}``, answered with what it did and holds (:meth:`.Predictor.stats`, its pid
  and resident memory).
- **Idle models are freed** every second once unused ``predict_idle_s``.
- **It ends with the API process**: its standard input is a pipe from the API process, and
  when that closes (the API process ended, however it ended) it removes its socket and exits;
  SIGTERM does the same.

When it is ready it prints one JSON line on standard output (``{"ready": true, "pid": ...}``),
then writes nothing more there (its log lines go to standard error, the service's log).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from datavolume.datasets import DatasetUnavailable
from jobkit.errors import summary_line
from trainer_service.inference import wire
from trainer_service.inference.models import ModelUnavailable
from trainer_service.inference.predictor import Predictor, PredictorOptions
from trainer_service.runs.checkpoints import NoSuchCheckpoint
from trainer_service.settings import Settings

logger = logging.getLogger("trainer_service.predictor")
#: Seconds between two looks for idle models.
JANITOR_INTERVAL_S = 1.0
#: A client has this long to send its request once connected.
REQUEST_READ_TIMEOUT_S = 60.0


def resident_bytes() -> int:
    """This process's resident memory now (``/proc/self/statm``)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


class PredictorServer:
    """Answers the requests of the module docstring with ``predictor``."""

    def __init__(self, predictor: Predictor, settings: Settings) -> None:
        self.predictor = predictor
        self.settings = settings

    def handle(self, connection: socket.socket) -> None:
        with connection:
            try:
                connection.settimeout(REQUEST_READ_TIMEOUT_S)
                header, payload = wire.receive(connection)
                connection.settimeout(None)
                wire.send(connection, self.answer(header, payload))
            except OSError:  # the client went away (it timed out, or the API process ended)
                pass

    def answer(self, header: dict[str, Any], payload: bytes) -> dict[str, Any]:
        op = header.get("op")
        if op == "stats":
            return {**self.predictor.stats(), "pid": os.getpid(), "rss_bytes": resident_bytes()}
        if op != "classify":
            return failure("failed", f"unknown request {op!r}")
        try:
            run = self.settings.volume.run(str(header["run"]))
            names, sizes = list(header["names"]), [int(n) for n in header["sizes"]]
            if len(names) != len(sizes) or sum(sizes) != len(payload):
                return failure("failed", "the request's sizes do not match its payload")
            uploads, start = [], 0
            for name, size in zip(names, sizes, strict=True):
                uploads.append((str(name), payload[start : start + size]))
                start += size
            answer = self.predictor.classify(run, str(header["checkpoint"]), uploads)
        except NoSuchCheckpoint as exc:
            return failure("no_checkpoint", str(exc))
        except FileNotFoundError:  # resolved, then deleted (pruned) before it was read
            return failure("no_checkpoint", f"{header['checkpoint']} went away as it was read")
        except DatasetUnavailable as exc:
            return failure("failed", exc.message)
        except (ModelUnavailable, TimeoutError) as exc:
            return failure("failed", str(exc))
        except Exception as exc:  # any other failure answers this request; the next may work
            logger.exception("predict request failed")
            return failure("failed", f"{type(exc).__name__}: {summary_line(str(exc))}")
        return {"answer": answer}

    def janitor(self) -> None:
        while True:
            time.sleep(JANITOR_INTERVAL_S)
            self.predictor.free_idle()


def failure(kind: str, message: str) -> dict[str, Any]:
    return {"error": {"kind": kind, "message": message}}


def exit_with_parent(folder: Path) -> None:
    """Block until standard input (the API process's pipe) closes, then clean up and exit."""
    try:
        while sys.stdin.buffer.read(4096):
            pass
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        os._exit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trainer_service.inference.server",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--socket", type=Path, required=True, help="the Unix socket to serve")
    args = parser.parse_args(argv)
    settings = Settings()
    if settings.predict_nice > 0:
        os.nice(settings.predict_nice)  # before any thread starts: they all inherit it
    logging.basicConfig(level=logging.INFO, format="%(asctime)s predictor: %(message)s")

    folder = args.socket.parent
    server = PredictorServer(
        Predictor(settings.volume, PredictorOptions.from_settings(settings)), settings
    )
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    args.socket.unlink(missing_ok=True)
    listener.bind(str(args.socket))
    listener.listen(128)

    def stop(*_: Any) -> None:
        shutil.rmtree(folder, ignore_errors=True)
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    threading.Thread(target=exit_with_parent, args=(folder,), daemon=True).start()
    threading.Thread(target=server.janitor, name="janitor", daemon=True).start()
    print(json.dumps({"ready": True, "pid": os.getpid()}), flush=True)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # nothing more on the API's pipe
    while True:
        connection, _ = listener.accept()
        threading.Thread(target=server.handle, args=(connection,), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
