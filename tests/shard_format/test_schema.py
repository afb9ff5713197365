import pytest

from shard_format.schema import parse_shard_file_name, shard_file_name


def test_shard_file_name_follows_tfds_convention():
    assert shard_file_name("tiny", "train", 3, 16) == "tiny-train.tfrecord-00003-of-00016"


def test_shard_file_name_round_trips():
    name = shard_file_name("tiny-imagenet-200", "val", 0, 2)
    assert parse_shard_file_name(name) == ("tiny-imagenet-200", "val", 0, 2)


@pytest.mark.parametrize("index,count", [(-1, 4), (4, 4)])
def test_shard_index_out_of_range_is_rejected(index, count):
    with pytest.raises(ValueError, match="shard index"):
        shard_file_name("x", "train", index, count)


def test_parse_rejects_foreign_names():
    with pytest.raises(ValueError, match="not a shard file name"):
        parse_shard_file_name("x-train.tfrecord-0-of-1.tmp")
