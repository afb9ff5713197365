"""Feature keys, schema version and file naming of the shards, declared once.

A record is a ``tf.train.Example`` whose features match the TFDS feature dictionary
``{image: Image(jpeg), label: ClassLabel, wnid: Text, file_name: Text}``, so the same files read
with :func:`shard_format.records.parse` and with ``tfds.builder_from_directory``.
"""

from __future__ import annotations

import re

#: Bumped whenever a reader of the previous version could misread a record or the metadata.
SCHEMA_VERSION = 1

# Feature keys.
IMAGE = "image"  #: encoded JPEG bytes (RGB), never decoded pixels
LABEL = "label"  #: int64 class index in wnids.txt line order; UNLABELED for the test split
WNID = "wnid"  #: WordNet id of the class ("" for the test split)
FILE_NAME = "file_name"  #: source file name, e.g. "n01443537_0.JPEG" or "test_17.JPEG"

UNLABELED = -1
IMAGE_SIZE = 64
CHANNELS = 3
IMAGE_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, CHANNELS)

TRAIN, VAL, TEST = "train", "val", "test"
SPLITS = (TRAIN, VAL, TEST)
LABELED_SPLITS = (TRAIN, VAL)

#: How class indices are assigned. Loaders disagree (torchvision sorts wnids), so it is recorded.
CLASS_ORDER = "wnids.txt line order"

#: Metadata file of this package, written last in a dataset folder: its presence means "complete".
METADATA_FILE = "shard_format.json"
#: What a dataset name may be: its folder's name, and the start of its shards' names.
DATASET_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"

SHARD_SUFFIX = "tfrecord"
_SHARD_RE = re.compile(
    r"^(?P<name>.+)-(?P<split>[a-z]+)\.tfrecord-(?P<index>\d{5})-of-(?P<count>\d{5})$"
)
#: The same naming as a TFDS filename template (used when writing TFDS metadata).
TFDS_FILENAME_TEMPLATE = "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}"


def shard_file_name(name: str, split: str, index: int, count: int) -> str:
    """``<name>-<split>.tfrecord-00003-of-00016``: the TFDS and tensorflow/models convention."""
    if not 0 <= index < count:
        raise ValueError(f"shard index must be in [0, {count}), got {index}")
    return f"{name}-{split}.{SHARD_SUFFIX}-{index:05d}-of-{count:05d}"


def parse_shard_file_name(file_name: str) -> tuple[str, str, int, int]:
    """Inverse of :func:`shard_file_name`: ``(name, split, index, count)``; ValueError otherwise."""
    m = _SHARD_RE.match(file_name)
    if m is None:
        raise ValueError(f"not a shard file name: {file_name!r}")
    return m["name"], m["split"], int(m["index"]), int(m["count"])
