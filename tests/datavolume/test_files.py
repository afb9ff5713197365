import json
import os
import stat

import pytest

from datavolume.files import (
    atomic_copy,
    atomic_write_json,
    atomic_write_text,
    file_digest,
    read_json,
    replacing,
    temp_path,
)


def test_atomic_write_replaces_the_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "sub" / "state.json"
    atomic_write_json(path, {"b": 1, "a": [1, 2]})
    atomic_write_json(path, {"epoch": 3})
    assert json.loads(path.read_text()) == {"epoch": 3}
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "history.csv"
    atomic_write_text(path, "epoch\n1\n")
    with pytest.raises(TypeError):
        atomic_write_json(path, {"not json": object()})
    assert path.read_text() == "epoch\n1\n"
    assert [p.name for p in tmp_path.iterdir()] == ["history.csv"]


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_written_files_honour_the_umask_like_open_does(tmp_path, umask):
    previous = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "written.txt", "x")
        tmp = temp_path(tmp_path / "model.keras", ".keras")
        (tmp_path / "plain.txt").write_text("x")
    finally:
        os.umask(previous)
    want = stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)
    assert want == 0o666 & ~umask
    assert stat.S_IMODE((tmp_path / "written.txt").stat().st_mode) == want
    assert stat.S_IMODE(tmp.stat().st_mode) == want
    assert tmp.name.startswith(".model.") and tmp.name.endswith(".tmp.keras")


def test_replacing_renames_on_success_and_cleans_up_on_failure(tmp_path):
    path = tmp_path / "sub" / "model.keras"
    with replacing(path, ".keras") as tmp:
        assert tmp.parent == path.parent and tmp.suffix == ".keras" and not path.exists()
        tmp.write_text("v1")
    assert path.read_text() == "v1"
    with pytest.raises(RuntimeError), replacing(path, ".keras") as tmp:
        tmp.write_text("half")
        raise RuntimeError("save failed")
    assert path.read_text() == "v1"
    assert [p.name for p in path.parent.iterdir()] == ["model.keras"]


def test_read_json_of_a_missing_file_is_none(tmp_path):
    assert read_json(tmp_path / "absent.json") is None
    assert read_json(tmp_path / "absent.json", tolerate_corrupt=True) is None


def test_read_json_refuses_a_corrupt_file_unless_told_to_tolerate_it(tmp_path):
    path = tmp_path / "latest.json"
    path.write_text('{"epoch": 3')
    with pytest.raises(ValueError, match=r"latest\.json is not valid JSON"):
        read_json(path)
    assert read_json(path, tolerate_corrupt=True) is None
    atomic_write_json(path, {"epoch": 3})
    assert read_json(path) == {"epoch": 3}


def test_atomic_copy_and_digest(tmp_path):
    source = tmp_path / "a.bin"
    source.write_bytes(b"abc")
    atomic_copy(source, tmp_path / "sub" / "b.bin")
    assert (tmp_path / "sub" / "b.bin").read_bytes() == b"abc"
    assert file_digest(source, "md5") == "900150983cd24fb0d6963f7d28e17f72"
