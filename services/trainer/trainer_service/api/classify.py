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
from fastapi.concurrency import run_in_threadpool

from jobkit.api import require_job
from jobkit.problems import PROBLEM_JSON, Problem, invalid_field
from trainer_service.api.runs import PREFIX, RESOURCE, RunId
from trainer_service.api.schemas import Prediction
from trainer_service.inference.classifier import (
    ClassificationFailed,
    Classifier,
    ClassifierBusy,
    Upload,
)
from trainer_service.runs.checkpoints import MODEL_NAME_PATTERN, NoSuchCheckpoint

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
    # A coroutine that waits for the predictor on the event loop and, once a run is known to
    # exist, never crosses to a worker thread: as a plain function with the store and settings
    # dependencies a request crossed four times (each dependency, the route, its answer's
    # validation), about 1 ms of the API process's CPU, which a training run beside it needs
    # (BENCHMARKS.md, section 7). The predictor resolves the checkpoint (409 from there).
    state = request.app.state
    known = known_runs(state)
    if run_id not in known:
        await run_in_threadpool(require_job, state.store, run_id, "run")  # SQLite: 404
        known.add(run_id)  # runs are never deleted: each is looked up once
    limit = state.settings.predict_max_images
    if len(images) > limit:
        raise invalid_field(
            "body.images", f"{len(images)} images; one request may send at most {limit}"
        )
    uploads = [Upload(image.filename or "", await image.read()) for image in images]
    answer = await get_classifier(request).classify(run_id, checkpoint, uploads)
    return Prediction.model_validate(answer)


def known_runs(state) -> set[str]:
    """The run ids this app found in its store (made on first use)."""
    if getattr(state, "predict_runs", None) is None:
        state.predict_runs = set()
    return state.predict_runs
