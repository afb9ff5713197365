"""TFDS metadata beside the shards, so ``tfds.builder_from_directory(<dir>)`` loads them.

The features match :mod:`shard_format.schema` exactly (same keys, JPEG-encoded 64x64x3 image,
class label in wnids.txt order, wnid and file name as text); the test split stores label -1.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from shard_format.metadata import DatasetMetadata
from shard_format.schema import (
    FILE_NAME,
    IMAGE,
    IMAGE_SHAPE,
    LABEL,
    SHARD_SUFFIX,
    TFDS_FILENAME_TEMPLATE,
    WNID,
)

DATASET_INFO_FILE = "dataset_info.json"
FEATURES_FILE = "features.json"
LABELS_FILE_SUFFIX = ".labels.txt"
HOMEPAGE = "http://cs231n.stanford.edu/"


def import_tfds() -> None:
    """Import TFDS (most of a second). The prepare calls it while its writer processes run,
    in its own main thread (an import in a second thread once hung a prepare), so that the
    metadata phase finds it imported."""
    importlib.import_module("tensorflow_datasets")


def tfds_features(wnids: list[str]):
    """The ``tfds.features.FeaturesDict`` of a record."""
    import tensorflow_datasets as tfds

    return tfds.features.FeaturesDict(
        {
            IMAGE: tfds.features.Image(shape=IMAGE_SHAPE, encoding_format="jpeg"),
            LABEL: tfds.features.ClassLabel(names=wnids),
            WNID: tfds.features.Text(),
            FILE_NAME: tfds.features.Text(),
        }
    )


def filename_template(dataset_dir: Path, name: str):
    """The shards' TFDS file template with the dataset name spelled out.

    TFDS parses ``{DATASET}`` as "up to the first hyphen", so ``tiny-imagenet-200-train...``
    would read as dataset ``tiny``, split ``imagenet-200-train``; a literal name avoids that.
    """
    from tensorflow_datasets.core import naming

    return naming.ShardedFileTemplate(
        data_dir=Path(dataset_dir),
        template=TFDS_FILENAME_TEMPLATE.replace("{DATASET}", name),
        dataset_name=name,
        filetype_suffix=SHARD_SUFFIX,
    )


def write_tfds_metadata(dataset_dir: Path, metadata: DatasetMetadata) -> None:
    """Write ``dataset_info.json``, ``features.json`` and the label names into ``dataset_dir``."""
    import tensorflow_datasets as tfds

    split_infos = [
        tfds.core.SplitInfo(
            name=split.name,
            shard_lengths=[s.num_records for s in split.shards],
            num_bytes=split.num_bytes,
        )
        for split in metadata.splits.values()
    ]
    tfds.folder_dataset.write_metadata(
        data_dir=str(dataset_dir),
        features=tfds_features(metadata.wnids()),
        split_infos=split_infos,
        filename_template=filename_template(dataset_dir, metadata.name),
        check_data=False,
        description=f"{metadata.name}: Tiny ImageNet images as JPEG TFRecords "
        f"({metadata.num_classes} classes, label = wnids.txt line order, test label -1).",
        homepage=HOMEPAGE,
    )


def remove_tfds_metadata(dataset_dir: Path) -> None:
    """Delete the TFDS metadata files (so a dataset being rewritten does not load)."""
    dataset_dir = Path(dataset_dir)
    for name in (DATASET_INFO_FILE, FEATURES_FILE):
        (dataset_dir / name).unlink(missing_ok=True)
    for path in dataset_dir.glob(f"*{LABELS_FILE_SUFFIX}"):
        path.unlink(missing_ok=True)
