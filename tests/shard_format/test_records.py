import io

import numpy as np
import tensorflow as tf
from PIL import Image

from shard_format.encode import serialize
from shard_format.records import decode, parse
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


def test_grayscale_jpeg_decodes_to_three_channels():
    buf = io.BytesIO()
    Image.new("L", (64, 64), 128).save(buf, format="JPEG")
    features = decode(tf.constant(serialize(buf.getvalue(), 1, "n1", "gray.JPEG")))
    assert features[IMAGE].shape == (64, 64, 3)
