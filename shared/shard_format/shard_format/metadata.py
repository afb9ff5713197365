"""Pydantic models of a prepared dataset's metadata, read by both services.

The dataset service writes ``shard_format.json`` last and atomically; a folder without it is not a
dataset (it may be a write in progress). Readers call :func:`load_metadata`, which refuses a schema
version it does not know before looking at anything else.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from shard_format.schema import (
    CHANNELS,
    CLASS_ORDER,
    IMAGE_SIZE,
    METADATA_FILE,
    SCHEMA_VERSION,
)


class SchemaVersionError(ValueError):
    """The metadata was written with a schema version this code cannot read."""


class ClassInfo(BaseModel):
    index: int = Field(ge=0, description="Label value stored in the records.")
    wnid: str
    words: str = Field("", description="Names from words.txt, comma separated.")


class ShardInfo(BaseModel):
    file_name: str
    num_records: int = Field(ge=0)
    num_bytes: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class SplitInfo(BaseModel):
    name: str
    labeled: bool
    num_records: int = Field(ge=0)
    shards: list[ShardInfo]

    @property
    def num_bytes(self) -> int:
        return sum(s.num_bytes for s in self.shards)


class Provenance(BaseModel):
    """How the data was produced, so a dataset can be traced and reproduced."""

    source_kind: Literal["url", "zip", "folder", "synthetic"]
    source: str = Field(description="URL, path under the data root, or generator spec.")
    md5: str | None = Field(None, description="MD5 of the archive when one was used.")
    image_folder: str | None = Field(
        None,
        description="The reorganized tiny-imagenet-200 tree (train/<wnid>/images, "
        "val/<wnid>/images, test/images) under the data root, when there is one: always for "
        "folder and synthetic sources, on request for archives (read in place otherwise).",
    )
    shuffle_seed: int
    re_encoded: list[str] = Field(
        default_factory=list, description="Files re-encoded to RGB JPEG (grayscale, CMYK, PNG)."
    )
    skipped: list[str] = Field(
        default_factory=list, description="Undecodable files left out (only when allowed)."
    )
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    writer: str = Field("dataset_service", description="Program that wrote the shards.")


class DatasetMetadata(BaseModel):
    schema_version: int = SCHEMA_VERSION
    name: str
    image_size: int = IMAGE_SIZE
    channels: int = CHANNELS
    image_encoding: Literal["jpeg"] = "jpeg"
    class_order: str = CLASS_ORDER
    classes: list[ClassInfo]
    splits: dict[str, SplitInfo]
    provenance: Provenance

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def split(self, name: str) -> SplitInfo:
        try:
            return self.splits[name]
        except KeyError:
            raise KeyError(
                f"dataset {self.name!r} has no split {name!r} (has {sorted(self.splits)})"
            ) from None

    def shard_paths(self, dataset_dir: Path, split: str) -> list[Path]:
        return [Path(dataset_dir) / s.file_name for s in self.split(split).shards]

    def wnids(self) -> list[str]:
        return [c.wnid for c in sorted(self.classes, key=lambda c: c.index)]


def check_schema_version(raw: dict) -> None:
    """Raise :class:`SchemaVersionError` unless ``raw`` declares this package's schema version."""
    found = raw.get("schema_version")
    if found != SCHEMA_VERSION:
        raise SchemaVersionError(
            f"dataset schema version {found!r} is not supported (this code reads {SCHEMA_VERSION})"
        )


def load_metadata(dataset_dir: Path) -> DatasetMetadata:
    """Read a dataset's metadata: FileNotFoundError if absent, SchemaVersionError if foreign."""
    path = Path(dataset_dir) / METADATA_FILE
    raw = json.loads(path.read_text())
    check_schema_version(raw)
    return DatasetMetadata.model_validate(raw)
