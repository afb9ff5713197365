import json

import pytest

from jobkit.files import atomic_write_json, atomic_write_text


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
