"""Classify images with a run's checkpoint, keeping the models warm: the code behind
``POST /v1/runs/{id}/predict`` (in the predictor process, :mod:`.server`) and behind
``python -m trainer_service.inference.classify`` and ``tin predict --local`` (in their own
process). No Keras, TensorFlow or JAX: ONNX Runtime on the run's export (:mod:`.models`).

A request names a run folder, a checkpoint (``best``, ``latest``, ``final``, an epoch) and its
images. The checkpoint name is resolved to its file as it is now (so a newer ``best.keras`` is
the one that answers), its model taken from the cache (exported and loaded on first use), each
image decoded by :mod:`.images` (one that is not an image is answered with its reason), the
images run in a batch with the other requests for that model (:mod:`.batching`), and each
answered with its top classes as the run scored them, with the run's own classes
(``dataset.json``). The answer names the checkpoint file that answered and its epoch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from datavolume.layout import DataRoot
from datavolume.runs import RunFolder
from trainer_service.inference.batching import Batcher
from trainer_service.inference.images import ImageError, load_image
from trainer_service.inference.models import (
    ModelCache,
    ModelLoader,
    RuntimeOptions,
    ServedModel,
)
from trainer_service.runs.checkpoints import resolve_model
from trainer_service.runs.dataset import read_dataset_record

DEFAULT_TOP = 5


@dataclass(frozen=True)
class PredictorOptions:
    """How a :class:`Predictor` runs (the service's ``predict_*`` settings)."""

    threads: int = 2
    max_models: int = 4
    idle_s: float = 600.0
    max_batch: int = 32
    batch_wait_s: float = 0.002
    timeout_s: float = 120.0  # a request's longest wait: export, load, queue and run

    @classmethod
    def from_settings(cls, settings) -> PredictorOptions:
        return cls(
            threads=settings.predict_threads,
            max_models=settings.predict_max_models,
            idle_s=settings.predict_idle_s,
            max_batch=settings.predict_max_batch,
            batch_wait_s=settings.predict_batch_wait_ms / 1000,
            timeout_s=settings.predict_timeout_s,
        )


def top_classes(logits: np.ndarray, classes: list[dict[str, Any]], k: int) -> list[list[dict]]:
    """For each row of ``logits``: the ``k`` most probable classes, most probable first."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    probabilities = np.exp(shifted) / np.exp(shifted).sum(axis=-1, keepdims=True)
    k = min(k, logits.shape[-1])
    answers = []
    for row in probabilities:
        order = np.argsort(-row, kind="stable")[:k]
        answers.append(
            [
                {
                    "index": int(i),
                    "wnid": classes[i]["wnid"],
                    "words": classes[i]["words"],
                    "probability": round(float(row[i]), 6),
                }
                for i in order
            ]
        )
    return answers


class Predictor:
    """Warm models and the batcher in front of them (see the module docstring); thread-safe."""

    def __init__(self, root: DataRoot, options: PredictorOptions | None = None) -> None:
        self.root = root
        self.options = options = options or PredictorOptions()
        self.loader = ModelLoader(RuntimeOptions(options.threads))
        self.models = ModelCache(self.loader.load, options.max_models, options.idle_s)
        self.batcher = Batcher(_run_model, options.max_batch, options.batch_wait_s)
        self.requests = 0

    def classify(
        self,
        run: RunFolder,
        checkpoint: str,
        uploads: list[tuple[str, bytes]],
        top: int = DEFAULT_TOP,
    ) -> dict[str, Any]:
        """The answer for ``uploads`` ((name, bytes) pairs, answered in order by those names).

        Raises ``NoSuchCheckpoint`` (a ``FileNotFoundError``), ``DatasetUnavailable`` (no
        classes), ``ModelUnavailable`` (the export failed) or ``TimeoutError``."""
        self.requests += 1
        deadline = time.monotonic() + self.options.timeout_s
        path = resolve_model(run, checkpoint)
        classes = read_dataset_record(run, self.root)["classes"]  # a small file: read each time
        served = self.models.get(run, path, self.options.timeout_s)
        items: list[dict[str, Any]] = [{"image": name} for name, _ in uploads]
        arrays, placed = [], []
        self.batcher.announce()  # a batch starting now may wait for these images
        try:
            for i, (_, data) in enumerate(uploads):
                try:
                    arrays.append(load_image(data))
                    placed.append(i)
                except ImageError as exc:
                    items[i]["error"] = str(exc)
        except BaseException:
            self.batcher.withdraw()
            raise
        if not arrays:
            self.batcher.withdraw()
        else:
            left = max(deadline - time.monotonic(), 0.001)
            logits = self.batcher.logits(served, np.stack(arrays), left, announced=True)
            for i, best in zip(placed, top_classes(logits, classes, top), strict=True):
                items[i]["top"] = best
        return {
            "run": run.root.name,
            "checkpoint": served.path.name,
            "epoch": served.epoch,
            "tta_flip": served.tta_flip,
            "items": items,
        }

    def free_idle(self) -> list[ServedModel]:
        return self.models.free_idle()

    def stats(self) -> dict[str, Any]:
        """What the predictor did and holds, for people and tests."""
        batcher = self.batcher
        return {
            "requests": self.requests,
            "exports": self.loader.exports,
            "loads": self.models.loads,
            "freed": self.models.freed,
            "batches": batcher.batches,
            "images": batcher.images,
            "largest_batch": batcher.largest,
            "waiting": batcher.waiting(),
            "models": [m.describe() for m in self.models.models()],
        }


def _run_model(model: ServedModel, images: np.ndarray) -> np.ndarray:
    return model.logits(images)
