"""``GET /v1/model-report``: parameters, multiply-adds and (optionally) train-step memory."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from jobkit.problems import PROBLEM_JSON, invalid_field
from trainer_service import reports

router = APIRouter(tags=["model"])


@router.get(
    "/v1/model-report",
    responses={422: {"content": {PROBLEM_JSON: {}}, "description": "Bad width or levels"}},
    summary="Size and cost of the ResNet for a width and levels (cached)",
)
def model_report(
    width: Annotated[str, Query(description='"full", "half" or a multiple of 4')] = "full",
    levels: Annotated[str, Query(description="Bottleneck repeats per level")] = "4,6,3,2",
    classes: Annotated[
        int | None, Query(ge=1, le=100_000, description="Default: the model's (200)")
    ] = None,
    batch_size: Annotated[int, Query(ge=1, le=4096)] = 32,
    memory: Annotated[bool, Query(description="Measure one train step's peak memory")] = False,
) -> dict[str, Any]:
    from trainer_service.model.resnet import DEFAULT_CLASSES, parse_levels, resolve_width

    try:
        filters = resolve_width(width)
    except ValueError as exc:
        raise invalid_field("query.width", str(exc)) from exc
    try:
        parsed = parse_levels(levels)
    except ValueError as exc:
        raise invalid_field("query.levels", str(exc)) from exc
    return reports.cached_report(filters, parsed, classes or DEFAULT_CLASSES, batch_size, memory)
