"""The shards load with TFDS's standard loader, ``tfds.builder_from_directory``."""

import tensorflow_datasets as tfds

from dataset_service.tfds_meta import remove_tfds_metadata
from datavolume import DataRoot
from tests.dataset.support import SMALL_SPEC


def test_builder_from_directory_loads_every_split(reference):
    root, metadata = reference
    folder = DataRoot(root).dataset(metadata.name)
    builder = tfds.builder_from_directory(str(folder))
    assert builder.info.name == metadata.name == "tiny-imagenet-200"
    assert {name: s.num_examples for name, s in builder.info.splits.items()} == {
        "train": SMALL_SPEC.train_total,
        "val": SMALL_SPEC.val_total,
        "test": SMALL_SPEC.test_images,
    }
    assert builder.info.features["label"].names == metadata.wnids()
    assert len(builder.info.splits["train"].shard_lengths) == len(metadata.splits["train"].shards)

    for split in ("train", "val", "test"):
        examples = list(tfds.as_numpy(builder.as_dataset(split=split)))
        assert len(examples) == metadata.splits[split].num_records
        for ex in examples[:10]:
            assert ex["image"].shape == (64, 64, 3) and ex["image"].dtype.name == "uint8"
            if split == "test":
                assert ex["label"] == -1 and ex["wnid"] == b""
            else:
                assert metadata.wnids()[ex["label"]] == ex["wnid"].decode()
                if split == "train":
                    assert ex["file_name"].decode().startswith(ex["wnid"].decode())


def test_remove_tfds_metadata(tmp_path):
    for name in ("dataset_info.json", "features.json", "label.labels.txt", "keep.tfrecord"):
        (tmp_path / name).write_text("x")
    remove_tfds_metadata(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["keep.tfrecord"]
