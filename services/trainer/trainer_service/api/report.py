"""``GET /v1/model-report``: parameters and multiply-adds of a model shape, in closed form.

Nothing is built here (``trainer_service.model.architecture``), so the API process never imports
Keras. A measurement of a train step's peak memory needs a real model and a device:
``python -m bench.model_cost`` does it from the command line.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from jobkit.problems import PROBLEM_JSON, invalid_field
from trainer_service.model.architecture import (
    DEFAULT_CLASSES,
    MAX_CLASSES,
    check_shape,
    parse_levels,
    report,
    resolve_width,
)

router = APIRouter(tags=["model"])


@router.get(
    "/v1/model-report",
    responses={422: {"content": {PROBLEM_JSON: {}}, "description": "Bad width or levels"}},
    summary="Parameters and multiply-adds of the ResNet for a width and levels",
)
def model_report(
    width: Annotated[str, Query(description='"full", "half" or a multiple of 4')] = "full",
    levels: Annotated[str, Query(description="Bottleneck repeats per level")] = "4,6,3,2",
    classes: Annotated[
        int, Query(ge=1, le=MAX_CLASSES, description="Output classes")
    ] = DEFAULT_CLASSES,
) -> dict[str, Any]:
    try:
        filters = resolve_width(width)
    except ValueError as exc:
        raise invalid_field("query.width", str(exc)) from exc
    try:
        parsed = parse_levels(levels)
        check_shape(filters, parsed, classes)
    except ValueError as exc:
        raise invalid_field("query.levels", str(exc)) from exc
    return report(filters, parsed, classes)
