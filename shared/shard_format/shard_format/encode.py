"""Write records without TensorFlow: ``tf.train.Example`` bytes and TFRecord framing by hand.

A shard writer needs two things from TensorFlow, and both are small, fixed byte formats:

- :func:`serialize`: the record, exactly the bytes of ``tf.train.Example(...)
  .SerializeToString(deterministic=True)`` for the features of :mod:`shard_format.schema`
  (protobuf wire format; map entries sorted by key, as deterministic serialization does).
- :class:`RecordWriter`: a TFRecord file, exactly what ``tf.io.TFRecordWriter`` writes
  (``uint64 length, uint32 masked CRC-32C of the length, data, uint32 masked CRC-32C of the
  data``, little-endian).

``tests/shared/test_encode.py`` proves both byte for byte against TensorFlow. Writer processes
therefore start without importing TensorFlow (seconds per process) and build no proto object
per image. Readers keep using :mod:`shard_format.records` (TensorFlow).
"""

from __future__ import annotations

import struct
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

from crc32c import crc32c

from shard_format.schema import FILE_NAME, IMAGE, LABEL, UNLABELED, WNID

_JPEG_MAGIC = b"\xff\xd8\xff"
_MASK_DELTA = 0xA282EAD8
_U32 = 0xFFFFFFFF
_U64 = (1 << 64) - 1

# Field tags: (field number << 3) | wire type 2 (length-delimited).
_FIELD1 = b"\x0a"  # Example.features, Features.feature, entry key, BytesList/Int64List.value
_FIELD2 = b"\x12"  # map entry value
_FIELD3 = b"\x1a"  # Feature.int64_list (Feature.bytes_list is field 1)


_ONE_BYTE = [bytes((i,)) for i in range(0x80)]


def _varint(value: int) -> bytes:
    if 0 <= value < 0x80:
        return _ONE_BYTE[value]
    if 0 <= value < 0x4000:  # most lengths here: an image is a few kB
        return bytes(((value & 0x7F) | 0x80, value >> 7))
    value &= _U64  # negative int64s are 10-byte two's complement varints
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _delimited(tag: bytes, payload: bytes) -> bytes:
    return tag + _varint(len(payload)) + payload


def _bytes_feature(value: bytes) -> bytes:
    return _delimited(_FIELD1, _delimited(_FIELD1, value))  # Feature{bytes_list{value: [v]}}


def _int64_feature(value: int) -> bytes:
    return _delimited(_FIELD3, _delimited(_FIELD1, _varint(value)))  # packed Int64List


def _entry(key: str, feature: bytes) -> bytes:
    return _delimited(_FIELD1, _KEYS[key] + _delimited(_FIELD2, feature))


_KEYS = {k: _delimited(_FIELD1, k.encode()) for k in (FILE_NAME, IMAGE, LABEL, WNID)}


@lru_cache(maxsize=4096)
def _label_entry(label: int) -> bytes:
    return _entry(LABEL, _int64_feature(label))


@lru_cache(maxsize=4096)
def _wnid_entry(wnid: str) -> bytes:
    return _entry(WNID, _bytes_feature(wnid.encode()))


def _bytes_entry(key: str, value: bytes) -> tuple[list[bytes], int]:
    """The pieces of one ``{key: Feature{bytes_list{value: [value]}}}`` map entry, and their
    length: the lengths are summed, so the value (the image) is copied once, by the final join.
    """
    n = len(value)
    bytes_list = 1 + len(_varint(n)) + n
    feature = 1 + len(_varint(bytes_list)) + bytes_list
    key_bytes = _KEYS[key]
    entry = len(key_bytes) + 1 + len(_varint(feature)) + feature
    parts = [_FIELD1, _varint(entry), key_bytes, _FIELD2, _varint(feature)]
    parts += [_FIELD1, _varint(bytes_list), _FIELD1, _varint(n), value]
    return parts, 1 + len(parts[1]) + entry


def serialize(image_jpeg: bytes, label: int, wnid: str, file_name: str) -> bytes:
    """One record: encoded JPEG bytes, class index (UNLABELED for test), wnid, source file name."""
    if not image_jpeg.startswith(_JPEG_MAGIC):
        raise ValueError(f"{file_name}: image bytes are not a JPEG; re-encode before serializing")
    if label < UNLABELED:
        raise ValueError(f"{file_name}: label must be >= {UNLABELED}, got {label}")
    # Deterministic serialization writes map entries in key order: file_name, image, label,
    # wnid. The label and wnid entries repeat from record to record: built once each.
    name_parts, name_len = _bytes_entry(FILE_NAME, file_name.encode())
    image_parts, image_len = _bytes_entry(IMAGE, image_jpeg)
    label_entry, wnid_entry = _label_entry(label), _wnid_entry(wnid)
    body = name_len + image_len + len(label_entry) + len(wnid_entry)
    return b"".join([_FIELD1, _varint(body), *name_parts, *image_parts, label_entry, wnid_entry])


def masked_crc(data: bytes) -> int:
    """TFRecord's masked CRC-32C."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & _U32


def frame(record: bytes) -> bytes:
    """``record`` as it lies in a TFRecord file (no compression)."""
    length = struct.pack("<Q", len(record))
    head = struct.pack("<I", masked_crc(length))
    return b"".join((length, head, record, struct.pack("<I", masked_crc(record))))


class RecordWriter:
    """A TFRecord file written record by record (``with RecordWriter(path) as w: w.write(r)``)."""

    def __init__(self, path: str | Path) -> None:
        self._file: BinaryIO = open(path, "wb")  # noqa: SIM115 - closed by close()/__exit__

    def write(self, record: bytes) -> None:
        self._file.write(frame(record))

    def flush(self) -> None:
        self._file.flush()

    def fileno(self) -> int:
        return self._file.fileno()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
