"""``POST /v1/runs/{id}/predict``: classify uploaded images with a run's checkpoint.

The images travel as ``multipart/form-data`` (field ``images``, repeated), at most
``predict_max_images`` of them and ``predict_max_bytes`` in all; the classification runs in a
process of its own (:mod:`trainer_service.inference.predictor`), never in this one.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Query, Request, UploadFile

from jobkit.api import require_job
from jobkit.problems import PROBLEM_JSON, ProblemError, invalid_field, problem_type
from jobkit.service import SettingsDep, StoreDep
from trainer_service.api.runs import PREFIX, RESOURCE, RunId
from trainer_service.inference.predictor import (
    PredictionFailed,
    Predictor,
    PredictorBusy,
    Upload,
)
from trainer_service.runs.checkpoints import MODEL_NAME_PATTERN, resolve_model
from trainer_service.schemas import Prediction

_PROBLEM = {"content": {PROBLEM_JSON: {}}, "description": "Problem details (RFC 9457)"}
PREDICT_RETRY_AFTER_S = 5

router = APIRouter(prefix=PREFIX, tags=[RESOURCE])


def get_predictor(request: Request) -> Predictor:
    """The app's one predictor (made on first use, with the app's settings)."""
    state = request.app.state
    if getattr(state, "predictor", None) is None:
        state.predictor = Predictor(state.settings)
    return state.predictor


@router.post(
    "/{run_id}/predict",
    response_model=Prediction,
    responses={
        404: _PROBLEM,
        409: {**_PROBLEM, "description": "The run has no such checkpoint (yet)"},
        413: {**_PROBLEM, "description": "The images are more bytes than predict_max_bytes"},
        422: {**_PROBLEM, "description": "No images, or more than predict_max_images"},
        429: {**_PROBLEM, "description": "Another prediction is running: retry"},
        503: {**_PROBLEM, "description": "The predict process failed or ran too long"},
    },
    summary="Classify images (any format and size) with a run's checkpoint: top-5 classes each",
)
def predict(
    run_id: RunId,
    images: Annotated[list[UploadFile], File(description="Image files (repeat the field).")],
    request: Request,
    store: StoreDep,
    settings: SettingsDep,
    checkpoint: Annotated[
        str,
        Query(
            pattern=MODEL_NAME_PATTERN,
            description="best (default), latest, final (model.keras), N or epoch-000N.keras",
        ),
    ] = "best",
) -> Prediction:
    require_job(store, run_id, "run")
    if len(images) > settings.predict_max_images:
        raise invalid_field(
            "body.images",
            f"{len(images)} images; one request may send at most {settings.predict_max_images}",
        )
    try:
        resolve_model(settings.volume.run(run_id), checkpoint)
    except FileNotFoundError as exc:
        raise ProblemError(
            409, "No such checkpoint", str(exc), type_=problem_type("no-checkpoint")
        ) from None
    uploads = [Upload(image.filename or "", image.file.read()) for image in images]
    try:
        answer = get_predictor(request).classify(run_id, checkpoint, uploads)
    except PredictorBusy as exc:
        raise ProblemError(
            429,
            "Predictor busy",
            str(exc),
            type_=problem_type("predictor-busy"),
            headers={"Retry-After": str(PREDICT_RETRY_AFTER_S)},
        ) from None
    except PredictionFailed as exc:
        raise ProblemError(
            503, "Prediction failed", str(exc), type_=problem_type("prediction-failed")
        ) from None
    return Prediction.model_validate(answer)
