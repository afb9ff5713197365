"""Shared helpers of the trainer tests: a tiny config, waiting, reading TensorBoard events."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

TOY = "toy"
TOY_CLASSES = 4
TOY_TRAIN_PER_CLASS = 64  # 256 train images
TOY_VAL_PER_CLASS = 8  # write_toy_dataset's default
TOY_TEST_IMAGES = 8

#: A ResNet small enough for CPU tests: width 8, one bottleneck in one level.
TINY = {"dataset": TOY, "width": 8, "levels": [1], "batch_size": 16, "export_savedmodel": False,
        "export_onnx": False}  # fmt: skip


def tiny_config(**overrides: Any):
    from trainer_service.runs.config import TrainConfig

    return TrainConfig(**{**TINY, "epochs": 2, **overrides})


def run_to_end(config, run_dir: Path, data_root: Path, ctx=None) -> dict[str, Any]:
    """A run as its worker runs it (train, then the exports and the model card): its result as
    the job records it."""
    from jobkit.context import LocalContext
    from trainer_service.jobs.training import train_run

    return train_run(config, run_dir, data_root, ctx or LocalContext()).as_dict()


def wait_for(predicate: Callable[[], Any], timeout: float = 60.0, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy; AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def event_tags(folder: Path) -> dict[str, list[int]]:
    """TensorBoard event files under ``folder``: tag -> steps written."""
    import tensorflow as tf

    tags: dict[str, list[int]] = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
            event = tf.compat.v1.Event.FromString(record)
            for value in event.summary.value:
                tags.setdefault(value.tag, []).append(int(event.step))
    return tags
