import pytest

from dataset_service.errors import PathOutsideDataRoot
from dataset_service.paths import (
    download_file_name,
    downloads_dir,
    extracted_dir,
    relative_to_root,
    resolve_inside,
)


def test_relative_and_absolute_paths_inside_resolve(data_root):
    (data_root / "raw").mkdir()
    assert resolve_inside(data_root, "raw/x.zip") == (data_root / "raw/x.zip").resolve()
    absolute = str(data_root.resolve() / "raw" / "x.zip")
    assert resolve_inside(data_root, absolute) == data_root.resolve() / "raw" / "x.zip"
    assert resolve_inside(data_root, "raw/../raw/x.zip") == data_root.resolve() / "raw/x.zip"


@pytest.mark.parametrize("client_path", ["../outside.zip", "raw/../../x", "/etc/passwd", ""])
def test_paths_outside_the_data_root_are_refused(data_root, client_path):
    with pytest.raises(PathOutsideDataRoot):
        resolve_inside(data_root, client_path)


def test_symlink_escaping_the_data_root_is_refused(data_root, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (data_root / "link").symlink_to(outside)
    with pytest.raises(PathOutsideDataRoot, match="outside the data root"):
        resolve_inside(data_root, "link/file.zip")


def test_symlink_staying_inside_is_followed(data_root):
    (data_root / "real").mkdir()
    (data_root / "alias").symlink_to(data_root / "real")
    assert resolve_inside(data_root, "alias/a.zip") == data_root.resolve() / "real" / "a.zip"


def test_volume_layout(data_root):
    assert downloads_dir(data_root) == data_root / "raw" / "downloads"
    assert extracted_dir(data_root, "tiny") == data_root / "raw" / "extracted" / "tiny"
    assert relative_to_root(data_root, data_root.resolve() / "datasets" / "x") == "datasets/x"


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("http://cs231n.stanford.edu/tiny-imagenet-200.zip", "tiny-imagenet-200.zip"),
        ("http://h/a/b%20c.zip?x=1", "b_c.zip"),
        ("http://h/", "download"),
        ("http://h/..", "download"),
    ],
)
def test_download_file_name_is_safe(url, name):
    assert download_file_name(url) == name
