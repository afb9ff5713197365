"""``GET /v1/datasets`` and ``GET /v1/datasets/{name}``: prepared (ready) datasets."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from dataset_service.datasets import get_dataset, list_datasets
from dataset_service.models import DatasetDetail, DatasetList
from jobkit.problems import PROBLEM_JSON, ProblemError, problem_type
from jobkit.service import SettingsDep
from shard_format.schema import DATASET_NAME_PATTERN

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])
Name = Annotated[str, Path(pattern=DATASET_NAME_PATTERN)]


@router.get("", response_model=DatasetList, summary="Prepared datasets and their split counts")
def read_datasets(settings: SettingsDep) -> DatasetList:
    return DatasetList(items=list_datasets(settings.volume))


@router.get(
    "/{name}",
    response_model=DatasetDetail,
    responses={404: {"content": {PROBLEM_JSON: {}}, "description": "Not prepared (or not yet)"}},
    summary="One prepared dataset with its metadata",
)
def read_dataset(name: Name, settings: SettingsDep) -> DatasetDetail:
    found = get_dataset(settings.volume, name)
    if found is None:
        raise ProblemError(
            404,
            "Dataset not found",
            f"No prepared dataset named {name!r} (absent, or still being written)",
            type_=problem_type("dataset-not-found"),
            name=name,
        )
    return found
