import pytest

from jobkit.paths import OutsideRoot, resolve_inside


def test_paths_inside_the_root_resolve(tmp_path):
    (tmp_path / "a").mkdir()
    assert resolve_inside(tmp_path, "a/b.zip") == (tmp_path / "a" / "b.zip").resolve()
    assert resolve_inside(tmp_path, tmp_path / "a") == (tmp_path / "a").resolve()
    assert resolve_inside(tmp_path, "a/../a/x") == (tmp_path / "a" / "x").resolve()


@pytest.mark.parametrize("given", ["../x", "/etc/passwd", "out/x", "", "a\x00b"])
def test_escapes_and_bad_names_are_refused_without_server_paths(tmp_path, given):
    root = tmp_path / "root"
    root.mkdir()
    (root / "out").symlink_to(tmp_path)  # a link pointing out of the root
    with pytest.raises(OutsideRoot) as caught:
        resolve_inside(root, given)
    assert str(tmp_path) not in str(caught.value)
