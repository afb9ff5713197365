import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from shard_format.records import decode, parse, serialize
from shard_format.schema import FILE_NAME, IMAGE, LABEL, UNLABELED, WNID
from tests.utils.shards import jpeg_bytes, write_shards


def test_round_trip_through_real_shards(tmp_path, toy_records):
    paths = write_shards(tmp_path, toy_records, shards=3)
    assert all(p.stat().st_size > 0 for p in paths)

    read = [decode(r) for r in tf.data.TFRecordDataset([str(p) for p in paths])]

    assert len(read) == len(toy_records)
    by_name = {r[FILE_NAME].numpy().decode(): r for r in read}
    assert set(by_name) == {rec[3] for rec in toy_records}
    for jpeg, label, wnid, name in toy_records:
        got = by_name[name]
        assert got[LABEL].dtype == tf.int32
        assert int(got[LABEL]) == label
        assert got[WNID].numpy().decode() == wnid
        expected = tf.io.decode_jpeg(jpeg, channels=3).numpy()
        assert got[IMAGE].dtype == tf.uint8
        assert got[IMAGE].shape == (64, 64, 3)
        np.testing.assert_array_equal(got[IMAGE].numpy(), expected)
        # ... and close to what an independent decoder (PIL) sees, so it is the same picture.
        pil = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")).astype(int)
        assert np.abs(got[IMAGE].numpy().astype(int) - pil).mean() < 2.0


def test_parse_keeps_encoded_bytes(toy_records):
    jpeg, label, wnid, name = toy_records[0]
    features = parse(tf.constant(serialize(jpeg, label, wnid, name)))
    assert features[IMAGE].numpy() == jpeg


def test_unlabeled_record_for_test_split():
    jpeg = jpeg_bytes(np.zeros((64, 64, 3), np.uint8))
    features = decode(tf.constant(serialize(jpeg, UNLABELED, "", "test_0.JPEG")))
    assert int(features[LABEL]) == UNLABELED
    assert features[WNID].numpy() == b""


def test_non_jpeg_bytes_are_refused():
    buf = io.BytesIO()
    Image.new("RGB", (64, 64)).save(buf, format="PNG")
    with pytest.raises(ValueError, match="not a JPEG"):
        serialize(buf.getvalue(), 0, "n0", "fake.JPEG")


def test_labels_below_unlabeled_are_refused():
    jpeg = jpeg_bytes(np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="label must be"):
        serialize(jpeg, -2, "n0", "x.JPEG")


def test_grayscale_jpeg_decodes_to_three_channels():
    buf = io.BytesIO()
    Image.new("L", (64, 64), 128).save(buf, format="JPEG")
    features = decode(tf.constant(serialize(buf.getvalue(), 1, "n1", "gray.JPEG")))
    assert features[IMAGE].shape == (64, 64, 3)


def test_serialize_is_byte_identical_across_processes(toy_records):
    """Map order must not depend on the process: parallel writers give identical shards."""
    import subprocess
    import sys

    jpeg, label, wnid, name = toy_records[0]
    code = (
        "import sys; from shard_format.records import serialize; "
        f"sys.stdout.buffer.write(serialize({jpeg!r}, {label}, {wnid!r}, {name!r}))"
    )
    outputs = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, check=True).stdout
        for _ in range(3)
    }
    assert outputs == {serialize(jpeg, label, wnid, name)}
