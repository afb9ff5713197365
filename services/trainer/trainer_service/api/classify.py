"""``POST /v1/runs/{id}/predict``: classify uploaded images with a run's checkpoint.

The images travel as ``multipart/form-data`` (field ``images``, repeated), at most
``predict_max_images`` of them and ``predict_max_bytes`` in all; the warm predictor process
classifies them (:mod:`trainer_service.inference.classifier`), never this one. How its errors
are answered is :data:`PROBLEMS` (the app installs it beside jobkit's).
"""

from __future__ import annotations

import threading
from typing import Annotated

from fastapi import APIRouter, File, Query, Request, UploadFile
from starlette.concurrency import run_in_threadpool

from jobkit.api import require_job
from jobkit.problems import PROBLEM_JSON, Problem, invalid_field
from jobkit.store import JobStore
from trainer_service.api.runs import PREFIX, RESOURCE, RunId
from trainer_service.api.schemas import Prediction
from trainer_service.inference.classifier import (
    ClassificationFailed,
    Classifier,
    ClassifierBusy,
    Upload,
)
from trainer_service.runs.checkpoints import MODEL_NAME_PATTERN, NoSuchCheckpoint, resolve_model
from trainer_service.settings import Settings

_PROBLEM = {"content": {PROBLEM_JSON: {}}, "description": "Problem details (RFC 9457)"}
#: A full predict queue drains in milliseconds to seconds: retry soon.
PREDICT_RETRY_AFTER_S = 1

#: How this route's errors are answered.
PROBLEMS = {
    NoSuchCheckpoint: Problem(409, "No such checkpoint", "no-checkpoint"),
    ClassifierBusy: Problem(429, "Predictor busy", "predictor-busy", (), PREDICT_RETRY_AFTER_S),
    ClassificationFailed: Problem(503, "Prediction failed", "prediction-failed"),
}

router = APIRouter(prefix=PREFIX, tags=[RESOURCE])


_making = threading.Lock()


def get_classifier(request: Request) -> Classifier:
    """The app's one classifier (made on first use, with the app's settings): one predictor
    process however many requests come first at once."""
    state = request.app.state
    with _making:
        if getattr(state, "classifier", None) is None:
            state.classifier = Classifier(state.settings)
    return state.classifier


@router.post(
    "/{run_id}/predict",
    response_model=Prediction,
    responses={
        404: _PROBLEM,
        409: {**_PROBLEM, "description": "The run has no such checkpoint (yet)"},
        413: {**_PROBLEM, "description": "The images are more bytes than predict_max_bytes"},
        422: {**_PROBLEM, "description": "No images, or more than predict_max_images"},
        429: {**_PROBLEM, "description": "The predict queue is full (predict_max_queue): retry"},
        503: {**_PROBLEM, "description": "The predictor failed, died or ran too long"},
    },
    summary="Classify images (any format and size) with a run's checkpoint: top-5 classes each",
)
async def predict(
    run_id: RunId,
    images: Annotated[list[UploadFile], File(description="Image files (repeat the field).")],
    request: Request,
    checkpoint: Annotated[
        str,
        Query(
            pattern=MODEL_NAME_PATTERN,
            description="best (default), latest, final (model.keras), N or epoch-000N.keras",
        ),
    ] = "best",
) -> Prediction:
    # A coroutine that crosses to a worker thread once, for its checks (SQLite, the volume),
    # and waits for the predictor on the event loop: as a plain function with the store and
    # settings dependencies it crossed four times (each dependency, the route, its answer's
    # validation), about 0.4 ms more CPU of the ~4 ms the API process spends on a request:
    # CPU that a training run beside it needs (BENCHMARKS.md, section 7).
    state = request.app.state
    await run_in_threadpool(check, state.store, state.settings, run_id, checkpoint, len(images))
    uploads = [Upload(image.filename or "", await image.read()) for image in images]
    answer = await get_classifier(request).classify(run_id, checkpoint, uploads)
    return Prediction.model_validate(answer)


def check(store: JobStore, settings: Settings, run_id: str, checkpoint: str, count: int) -> None:
    """The run exists (404), sends at most ``predict_max_images`` (422) and has the checkpoint
    (409): before the uploads are read."""
    require_job(store, run_id, "run")
    if count > settings.predict_max_images:
        raise invalid_field(
            "body.images",
            f"{count} images; one request may send at most {settings.predict_max_images}",
        )
    resolve_model(settings.volume.run(run_id), checkpoint)
