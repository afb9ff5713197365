"""A data root with the toy dataset, shared by the inference tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from datavolume import DataRoot
from tests.trainer.support import TOY


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory: pytest.TempPathFactory, toy_dataset_dir: Path) -> Path:
    """A data root of this module whose ``datasets/toy`` links to the session's toy dataset."""
    root = tmp_path_factory.mktemp("inference") / "data"
    target = DataRoot(root).dataset(TOY)
    target.parent.mkdir(parents=True)
    target.symlink_to(toy_dataset_dir, target_is_directory=True)
    return root
