"""Fixtures for the trainer tests: a toy prepared dataset (written once) and data roots using it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Before TensorFlow is imported (see trainer_service/__init__.py): oneDNN crashes this model.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

from datavolume import DataRoot
from tests.trainer.support import TOY, TOY_TRAIN_PER_CLASS
from tests.utils.datasets import write_toy_dataset


@pytest.fixture(scope="session")
def toy_dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``datasets/toy`` of a session-wide data root: 4 classes, 64 train, 8 val per class."""
    root = tmp_path_factory.mktemp("toy-root")
    write_toy_dataset(root, TOY, train_per_class=TOY_TRAIN_PER_CLASS)
    return DataRoot(root).dataset(TOY)


@pytest.fixture
def data_root(tmp_path: Path, toy_dataset_dir: Path) -> Path:
    """A fresh data root whose ``datasets/toy`` links to the session's toy dataset."""
    root = tmp_path / "data"
    target = DataRoot(root).dataset(TOY)
    target.parent.mkdir(parents=True)
    target.symlink_to(toy_dataset_dir, target_is_directory=True)
    return root
