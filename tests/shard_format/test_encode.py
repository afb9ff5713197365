import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from shard_format.encode import RecordWriter, frame, serialize
from shard_format.records import FEATURE_SPEC
from shard_format.schema import FILE_NAME, IMAGE, LABEL, UNLABELED, WNID
from tests.utils.shards import jpeg_bytes


def tf_example(image: bytes, label: int, wnid: str, file_name: str) -> bytes:
    """The reference: TensorFlow's own proto, serialized deterministically."""

    def b(v: bytes) -> tf.train.Feature:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))

    feature = {
        IMAGE: b(image),
        LABEL: tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
        WNID: b(wnid.encode()),
        FILE_NAME: b(file_name.encode()),
    }
    example = tf.train.Example(features=tf.train.Features(feature=feature))
    return example.SerializeToString(deterministic=True)


def cases() -> list[tuple[bytes, int, str, str]]:
    rng = np.random.default_rng(0)
    small = jpeg_bytes(np.zeros((64, 64, 3), np.uint8))
    noisy = jpeg_bytes(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), quality=100)
    big = noisy + b"\0" * 300_000  # a length that needs a 3-byte varint
    return [
        (small, 0, "n01443537", "n01443537_0.JPEG"),
        (noisy, 127, "n01443537", "n01443537_1.JPEG"),
        (noisy, 128, "n01443537", "n01443537_2.JPEG"),  # label needs a 2-byte varint
        (small, 199, "n09999999", "val_9999.JPEG"),
        (small, UNLABELED, "", "test_0.JPEG"),  # negative: a 10-byte varint; empty wnid
        (big, 2**40, "n00000001", "ünïcode_name.JPEG"),
    ]


@pytest.mark.parametrize("record", cases(), ids=lambda r: f"label={r[1]},len={len(r[0])}")
def test_serialize_is_byte_identical_to_tensorflow(record):
    assert serialize(*record) == tf_example(*record)


def test_record_file_is_byte_identical_to_tf_record_writer_and_reads_back(tmp_path):
    records = [serialize(*r) for r in cases()]
    ours, theirs = tmp_path / "ours.tfrecord", tmp_path / "theirs.tfrecord"
    with RecordWriter(ours) as w:
        for r in records:
            w.write(r)
    with tf.io.TFRecordWriter(str(theirs)) as w:
        for r in records:
            w.write(r)
    assert ours.read_bytes() == theirs.read_bytes() == b"".join(frame(r) for r in records)
    read = [
        tf.io.parse_single_example(r, FEATURE_SPEC) for r in tf.data.TFRecordDataset([str(ours)])
    ]
    assert [(r[IMAGE].numpy(), int(r[LABEL]), r[WNID].numpy().decode()) for r in read] == [
        (c[0], c[1], c[2]) for c in cases()
    ]
    assert [r[FILE_NAME].numpy().decode() for r in read] == [c[3] for c in cases()]


def test_non_jpeg_bytes_are_refused():
    buf = io.BytesIO()
    Image.new("RGB", (64, 64)).save(buf, format="PNG")
    with pytest.raises(ValueError, match="not a JPEG"):
        serialize(buf.getvalue(), 0, "n0", "fake.JPEG")


def test_labels_below_unlabeled_are_refused():
    jpeg = jpeg_bytes(np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="label must be"):
        serialize(jpeg, -2, "n0", "x.JPEG")
