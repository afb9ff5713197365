"""Request and response models of the dataset service.

A prepare request names the dataset and where its images come from; the job stores the
request as JSON (``model_dump(mode="json")``), so the worker process rebuilds it exactly.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, model_validator

from dataset_service.settings import OFFICIAL_MD5, OFFICIAL_URL
from dataset_service.synthetic import MAX_CLASSES, SyntheticSpec
from shard_format.metadata import DatasetMetadata
from shard_format.schema import DATASET_NAME_PATTERN, SPLITS

MD5_PATTERN = r"^[0-9a-f]{32}$"
DEFAULT_NAME = "tiny-imagenet-200"

Split = Literal[SPLITS]  # type: ignore[valid-type]


class _Strict(BaseModel):
    # Strict: "3" is not an int and "yes" not a bool; unknown fields are errors.
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class UrlSource(_Strict):
    """Download the archive over HTTP(S), streaming to disk, then check its MD5."""

    kind: Literal["url"]
    url: HttpUrl = Field(HttpUrl(OFFICIAL_URL), description="Where the zip is served.")
    md5: str | None = Field(
        OFFICIAL_MD5,
        pattern=MD5_PATTERN,
        description="Expected MD5 of the zip (the official one by default); null skips the check.",
    )


class ZipSource(_Strict):
    """A zip already on the volume."""

    kind: Literal["zip"]
    path: str = Field(..., min_length=1, description="Path of the zip, relative to the data root.")
    md5: str | None = Field(None, pattern=MD5_PATTERN, description="Expected MD5, if known.")


class FolderSource(_Strict):
    """An extracted tiny-imagenet-200 folder on the volume (its val images get reorganized)."""

    kind: Literal["folder"]
    path: str = Field(
        ..., min_length=1, description="Folder holding wnids.txt, relative to the data root."
    )


#: The most images a synthetic request may ask for: ten times the real archive's 120,000.
MAX_SYNTHETIC_IMAGES = 1_200_000
#: What one synthetic image takes on the volume, generously: a JPEG of about 2 KB in the
#: generated tree and again in the shards (what a prepare is checked against before its 202).
SYNTHETIC_BYTES_PER_IMAGE = 6 * 1024


class SyntheticSource(_Strict):
    """Generate a synthetic tree in the archive's layout (demos and tests)."""

    kind: Literal["synthetic"]
    classes: int = Field(200, ge=1, le=MAX_CLASSES)
    train_per_class: int = Field(500, ge=1, le=10_000)
    val_per_class: int = Field(50, ge=1, le=10_000)
    test_images: int = Field(10_000, ge=1, le=1_000_000)
    seed: int = Field(0, ge=0, le=2**32 - 1)

    @property
    def total_images(self) -> int:
        return SyntheticSpec(**self.model_dump(exclude={"kind"})).total_images

    @model_validator(mode="after")
    def _bounded(self):
        if self.total_images > MAX_SYNTHETIC_IMAGES:
            raise ValueError(
                f"asks for {self.total_images:,} images; at most {MAX_SYNTHETIC_IMAGES:,} "
                "(ten times the real archive)"
            )
        return self


Source = Annotated[
    UrlSource | ZipSource | FolderSource | SyntheticSource, Field(discriminator="kind")
]


class PrepareRequest(_Strict):
    """Body of ``POST /v1/jobs``: turn a tiny-imagenet-200 source into sharded TFRecords."""

    name: str = Field(
        DEFAULT_NAME, pattern=DATASET_NAME_PATTERN, description="Dataset name: datasets/<name>/."
    )
    source: Source = Field(
        default_factory=lambda: UrlSource(kind="url"),
        description="Where the images come from (default: the official archive by URL).",
    )
    shards: dict[Split, Annotated[int, Field(ge=1, le=100_000)]] | None = Field(
        None,
        description="Shards per split; splits left out get a count derived from their size.",
    )
    shuffle_seed: int = Field(0, ge=0, description="Seed of the file-list shuffle.")
    skip_bad_images: bool = Field(
        False, description="Leave undecodable images out (and report them) instead of failing."
    )
    image_folder: bool = Field(
        False,
        description="Also extract an archive (url, zip) as a reorganized tiny-imagenet-200 tree "
        "(train/<wnid>/images, val/<wnid>/images, test/images) for folder-per-class loaders, "
        "once per archive under raw/extracted/; the shards are then written from it. Folder "
        "and synthetic sources are such a tree already.",
    )


# ---------------------------------------------------------------------------- responses


class SplitSummary(BaseModel):
    num_records: int
    num_shards: int
    num_bytes: int


class DatasetSummary(BaseModel):
    """A prepared (complete) dataset."""

    name: str
    path: str = Field(..., description="Folder of the dataset, relative to the data root.")
    num_classes: int
    splits: dict[str, SplitSummary]
    source_kind: str
    created_at: datetime


class DatasetDetail(DatasetSummary):
    metadata: DatasetMetadata


class DatasetList(BaseModel):
    items: list[DatasetSummary]
