"""Fixtures of the dataset service's tests: one small synthetic tree and zip per session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dataset_service.layout_names import ARCHIVE_NAME
from dataset_service.synthetic import generate, pack_zip
from tests.dataset.support import SMALL_SPEC, make_settings


@pytest.fixture(scope="session")
def pristine(tmp_path_factory) -> Path:
    """A small synthetic tiny-imagenet-200 tree as shipped. Read only: copy it to modify it."""
    return generate(tmp_path_factory.mktemp("pristine"), SMALL_SPEC, processes=1)


@pytest.fixture(scope="session")
def pristine_zip(pristine, tmp_path_factory) -> Path:
    """The pristine tree packed as tiny-imagenet-200.zip."""
    return pack_zip(pristine, tmp_path_factory.mktemp("zip") / ARCHIVE_NAME)


@pytest.fixture
def tree(pristine, tmp_path) -> Path:
    """A private copy of the pristine tree."""
    return Path(shutil.copytree(pristine, tmp_path / "copy" / pristine.name))


@pytest.fixture
def data_root(tmp_path) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    return root


@pytest.fixture
def settings(data_root):
    return make_settings(data_root)


@pytest.fixture(scope="session")
def reference(tmp_path_factory):
    """An uninterrupted prepare of the small synthetic dataset: (data root, metadata)."""
    from dataset_service.models import PrepareRequest
    from dataset_service.prepare import prepare
    from tests.dataset.support import SMALL

    root = tmp_path_factory.mktemp("reference")
    request = PrepareRequest(source={"kind": "synthetic", **SMALL})
    return root, prepare(request, make_settings(root))
