import json

import pytest

from datavolume.datasets import write_metadata
from shard_format.metadata import (
    ClassInfo,
    DatasetMetadata,
    Provenance,
    SchemaVersionError,
    ShardInfo,
    SplitInfo,
    load_metadata,
)
from shard_format.schema import METADATA_FILE, SCHEMA_VERSION


def make_metadata(name="toy"):
    shard = ShardInfo(
        file_name=f"{name}-train.tfrecord-00000-of-00001",
        num_records=4,
        num_bytes=1000,
        sha256="0" * 64,
    )
    return DatasetMetadata(
        name=name,
        classes=[ClassInfo(index=0, wnid="n1", words="cat"), ClassInfo(index=1, wnid="n2")],
        splits={"train": SplitInfo(name="train", labeled=True, num_records=4, shards=[shard])},
        provenance=Provenance(source_kind="synthetic", source="spec", shuffle_seed=0),
    )


def test_write_then_load_round_trips(tmp_path):
    meta = make_metadata()
    write_metadata(tmp_path, meta)
    loaded = load_metadata(tmp_path)
    assert loaded == meta
    assert loaded.schema_version == SCHEMA_VERSION
    assert loaded.wnids() == ["n1", "n2"]
    shard_name = meta.splits["train"].shards[0].file_name
    assert loaded.shard_paths(tmp_path, "train") == [tmp_path / shard_name]
    assert not [p for p in tmp_path.iterdir() if p.name != METADATA_FILE]  # no temp file left


def test_foreign_schema_version_is_refused(tmp_path):
    raw = json.loads(make_metadata().model_dump_json())
    raw["schema_version"] = SCHEMA_VERSION + 1
    (tmp_path / METADATA_FILE).write_text(json.dumps(raw))
    with pytest.raises(SchemaVersionError, match="not supported"):
        load_metadata(tmp_path)


def test_missing_metadata_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_metadata(tmp_path)


def test_unknown_split_names_the_choices():
    with pytest.raises(KeyError, match="has no split 'val'"):
        make_metadata().split("val")


def test_bad_checksum_is_rejected():
    with pytest.raises(ValueError):
        ShardInfo(file_name="x", num_records=1, num_bytes=1, sha256="not-hex")
