"""The models the predictor serves: a checkpoint's ONNX export, made on first use and kept in the
run folder, loaded into ONNX Runtime, and a bounded cache of them (no Keras, TensorFlow or JAX
here: only the one-off export process uses Keras, on TensorFlow).

**Why ONNX Runtime.** Measured on the development machine's 2 CPU cores (200 classes, logits
averaged with the mirror image's): width 32, ONNX Runtime answers 1 image in about 12 ms and 16
in about 140 ms with about 125 MiB of resident memory for the whole process; the same model kept
warm in Keras on TensorFlow (a ``tf.function``) took about 32 ms and 280 ms in about 800 MiB.
Width 64: 30 ms / 440 ms in 190 MiB against 55 ms / 670 ms in 800 MiB. ONNX Runtime's memory
arena is off: with it each session keeps its largest batch's activations (the same width-64
process held 475 MiB) for 5-10 % of speed.

**The export a checkpoint is served from** is ``serving/<checkpoint>.onnx`` in the run folder
(``RunFolder.serving_export``): ``python -m trainer_service.inference.export --serving`` makes it
from the checkpoint the way the run scores with it (its moving-average weights with ``use_ema``,
logits averaged with the mirror image's with ``tta_flip``) and writes into the ONNX file's
metadata what it was made from (:func:`serving_tags`: the file's name, size and modification time
in nanoseconds, its epoch). A checkpoint is written under a temporary name and renamed, so a
newer ``best.keras`` always differs from the export's tags: it is exported again before it
answers, never served stale. Exporting takes seconds (Keras and TensorFlow start, tf2onnx
converts; about 20 s on 2 cores), once per checkpoint version; requests for it wait meanwhile
(and an export that outlasts them finishes for the next request).

**The cache** (:class:`ModelCache`) keeps at most ``max_models`` loaded, keyed by run folder and
checkpoint file, the least recently used dropped first; one left unused ``idle_s`` is freed. A
model is loaded once however many requests ask for it at the same time (the others wait for it),
and one export runs at a time.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import os
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from datavolume.runs import RunFolder
from trainer_service.inference.process import (
    EXPORT_ENV,
    EXPORT_MODULE,
    ProcessFailed,
    run_json_process,
)
from trainer_service.runs.checkpoints import FINAL, ModelFile

logger = logging.getLogger("trainer_service.predictor")

#: How often a request re-exports a checkpoint that changed again while it was being exported.
EXPORT_ATTEMPTS = 3
#: The longest an export may take. Longer than a request waits: an export that outlasts the
#: request that started it (a training run taking the CPU) still finishes for the next one,
#: rather than being started over by each request and never done.
EXPORT_TIMEOUT_S = 1800.0


class ModelUnavailable(Exception):
    """A checkpoint could not be exported or loaded; the message says why, for a person."""


def serving_tags(
    version: ModelFile, epoch: int | None, *, use_ema: bool, tta_flip: bool
) -> dict[str, str]:
    """What the export's ONNX metadata says it was made from (strings, as ONNX keeps them)."""
    return {
        "source": version.name,
        "source_size": str(version.size),
        "source_mtime_ns": str(version.mtime_ns),
        "epoch": "" if epoch is None else str(epoch),
        "use_ema": str(use_ema).lower(),
        "tta_flip": str(tta_flip).lower(),
    }


def tagged_version(tags: dict[str, str]) -> ModelFile | None:
    """The model file version an export's metadata names, or None when it names none."""
    try:
        return ModelFile(tags["source"], int(tags["source_size"]), int(tags["source_mtime_ns"]))
    except (KeyError, ValueError):
        return None


@dataclass(frozen=True)
class RuntimeOptions:
    """How ONNX Runtime runs a model: ``threads`` intra-op threads that sleep when idle."""

    threads: int


def open_session(path: Path, options: RuntimeOptions):
    """An ONNX Runtime session of the model in ``path``, on the CPU: ``threads`` threads, one
    operator at a time, no busy-waiting between runs (spinning threads would take the CPU from a
    training run beside them), no memory arena (see the module docstring)."""
    import onnxruntime as ort  # here: the export process imports this module's tags only

    settings = ort.SessionOptions()
    settings.intra_op_num_threads = options.threads
    settings.inter_op_num_threads = 1
    settings.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    settings.enable_cpu_mem_arena = False
    settings.log_severity_level = 3
    settings.add_session_config_entry("session.intra_op.allow_spinning", "0")
    settings.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), settings, providers=["CPUExecutionProvider"])


@dataclass(eq=False)
class ServedModel:
    """One checkpoint version, loaded: uint8 images ``[B, 64, 64, 3]`` -> logits."""

    run: RunFolder
    path: Path  # the checkpoint (or model.keras) it was exported from
    version: ModelFile
    epoch: int | None
    tta_flip: bool
    session: Any = field(repr=False)
    loaded_at: float = field(default_factory=time.monotonic)
    last_used: float = field(default_factory=time.monotonic)

    @property
    def key(self) -> tuple[str, str]:
        return str(self.run.root), self.path.name

    def logits(self, images: np.ndarray) -> np.ndarray:
        (name,) = (i.name for i in self.session.get_inputs())
        return self.session.run(None, {name: images})[0]

    def describe(self) -> dict[str, Any]:
        return {
            "run": self.run.root.name,
            "checkpoint": self.path.name,
            "epoch": self.epoch,
            "idle_s": round(time.monotonic() - self.last_used, 3),
        }


def export_command(run: RunFolder, path: Path) -> list[str]:
    """The export process that makes ``run``'s serving export of the model file ``path``."""
    checkpoint = FINAL if path == run.model else path.name
    return [sys.executable, "-m", EXPORT_MODULE, "--run-dir", str(run.root),
            "--checkpoint", checkpoint, "--serving", "--json"]  # fmt: skip


class ModelLoader:
    """Loads a checkpoint's serving export into ONNX Runtime, exporting it first when it is
    missing or was made from another version of the file (one export at a time)."""

    def __init__(self, runtime: RuntimeOptions, export_timeout_s: float = EXPORT_TIMEOUT_S):
        self.runtime = runtime
        self.export_timeout_s = export_timeout_s
        self.exports = 0  # exports made (a test and the stats read it)
        self._exporting = threading.Lock()

    def export_env(self) -> dict[str, str]:
        """The export process's environment: Keras on TensorFlow, on the predictor's threads
        (it inherits the predictor's niceness too)."""
        threads = str(self.runtime.threads)
        return {**os.environ, **EXPORT_ENV, "TF_NUM_INTRAOP_THREADS": threads,
                "TF_NUM_INTEROP_THREADS": "1", "OMP_NUM_THREADS": threads}  # fmt: skip

    def load(self, run: RunFolder, path: Path) -> ServedModel:
        """``path`` as it is now, served (``FileNotFoundError`` if it is gone;
        :class:`ModelUnavailable` if it cannot be exported or loaded)."""
        export = run.serving_export(path)
        for _ in range(EXPORT_ATTEMPTS):
            version = ModelFile.of(path)
            served = self._open(run, path, export, version)
            if served is not None:
                return served
            with self._exporting:
                served = self._open(run, path, export, ModelFile.of(path))  # another made it
                if served is not None:
                    return served
                self._export(run, path)
            served = self._open(run, path, export, ModelFile.of(path))
            if served is not None:
                return served
        raise ModelUnavailable(
            f"{path.name} changed during each of {EXPORT_ATTEMPTS} exports; try again"
        )

    def _export(self, run: RunFolder, path: Path) -> None:
        started = time.monotonic()
        try:
            run_json_process(
                export_command(run, path),
                self.export_env(),
                self.export_timeout_s,
                "the export process",
            )
        except ProcessFailed as exc:
            raise ModelUnavailable(f"exporting {path.name} for the predictor: {exc}") from None
        self.exports += 1
        logger.info(
            "exported run %s %s for the predictor in %.1f s",
            run.root.name,
            path.name,
            time.monotonic() - started,
        )

    def _open(
        self, run: RunFolder, path: Path, export: Path, version: ModelFile
    ) -> ServedModel | None:
        """The export loaded, if it was made from ``version``; else None."""
        try:
            session = open_session(export, self.runtime)
        except Exception:  # missing, or cut short: exported again
            return None
        tags = session.get_modelmeta().custom_metadata_map
        if tagged_version(tags) != version:
            return None
        epoch = tags.get("epoch")
        return ServedModel(
            run=run,
            path=path,
            version=version,
            epoch=int(epoch) if epoch else None,
            tta_flip=tags.get("tta_flip") == "true",
            session=session,
        )


class ModelCache:
    """The served models (see the module docstring); thread-safe."""

    def __init__(
        self,
        load: Callable[[RunFolder, Path], ServedModel],
        max_models: int,
        idle_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self.max_models = max_models
        self.idle_s = idle_s
        self._clock = clock
        self._lock = threading.Lock()
        self._models: OrderedDict[tuple[str, str], ServedModel] = OrderedDict()
        self._loading: dict[tuple[str, str], Future] = {}
        self.loads = 0  # models loaded (a test and the stats read it)
        self.freed = 0  # models dropped: least recently used, idle or replaced

    def get(self, run: RunFolder, path: Path, timeout_s: float | None = None) -> ServedModel:
        """The model file ``path`` of ``run`` as it is now, loaded (the cached one while the
        file is unchanged). Waits at most ``timeout_s`` for another request's load."""
        key = (str(run.root), path.name)
        for _ in range(EXPORT_ATTEMPTS):
            version = ModelFile.of(path)
            with self._lock:
                served = self._models.get(key)
                if served is not None and served.version == version:
                    served.last_used = self._clock()
                    self._models.move_to_end(key)
                    return served
                future = self._loading.get(key)
                loading = future is None
                if loading:
                    future = self._loading[key] = Future()
            if loading:
                return self._load_into(key, future, run, path)
            served = future.result(timeout_s)  # another request's load: its error is ours
            if served.version == ModelFile.of(path):
                return served
        raise ModelUnavailable(f"{path.name} keeps changing; try again")

    def _load_into(self, key, future: Future, run: RunFolder, path: Path) -> ServedModel:
        try:
            served = self._load(run, path)
        except BaseException as exc:
            with self._lock:
                del self._loading[key]
            future.set_exception(exc)
            raise
        dropped = []
        with self._lock:
            del self._loading[key]
            served.last_used = self._clock()
            if (old := self._models.pop(key, None)) is not None:
                dropped.append(old)
            self._models[key] = served
            while len(self._models) > self.max_models:
                dropped.append(self._models.popitem(last=False)[1])
            self.loads += 1
            self.freed += len(dropped)
        future.set_result(served)
        logger.info(
            "loaded run %s %s (epoch %s)%s",
            run.root.name,
            path.name,
            served.epoch,
            "".join(f"; dropped {m.run.root.name} {m.path.name}" for m in dropped),
        )
        if dropped:
            dropped = old = None  # the last references: freed now
            release_memory()
        return served

    def free_idle(self) -> list[ServedModel]:
        """Drop the models unused for ``idle_s``; returns them."""
        now = self._clock()
        with self._lock:
            idle = [k for k, m in self._models.items() if now - m.last_used >= self.idle_s]
            dropped = [self._models.pop(k) for k in idle]
            self.freed += len(dropped)
        if dropped:
            logger.info(
                "freed %s, idle for %g s",
                ", ".join(f"run {m.run.root.name} {m.path.name}" for m in dropped),
                self.idle_s,
            )
            release_memory()
        return dropped

    def models(self) -> list[ServedModel]:
        """The loaded models, least recently used first."""
        with self._lock:
            return list(self._models.values())


def release_memory() -> None:
    """Give the memory of dropped models back to the system: collect them now, then ask glibc
    to return its free heap (without ``malloc_trim`` the process keeps its peak size)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to ask
        ctypes.CDLL("libc.so.6").malloc_trim(0)
