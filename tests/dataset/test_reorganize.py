import os

import pytest

from dataset_service.errors import ReorganizeError
from dataset_service.layout import validate
from dataset_service.reorganize import count_val_images, reorganize, val_image_path


def _snapshot(root):
    return sorted(
        (str(p.relative_to(root)), p.read_bytes()) for p in (root / "val").rglob("*") if p.is_file()
    )


def test_val_images_move_into_class_folders(tree):
    layout = validate(tree)
    originals = {
        a.file_name: (tree / "val" / "images" / a.file_name).read_bytes() for a in layout.val
    }
    report = reorganize(layout)
    assert report.moved == len(layout.val) and report.already_in_place == 0
    assert report.val_images == len(layout.val) and report.test_images == len(layout.test)
    for a in layout.val:
        assert val_image_path(tree, a.wnid, a.file_name).read_bytes() == originals[a.file_name]
    assert not (tree / "val" / "images").exists()  # would look like a class otherwise
    assert (tree / "val" / "val_annotations.txt").is_file()
    assert sorted(p.name for p in (tree / "val").iterdir() if p.is_dir()) == sorted(layout.wnids)
    assert len(list((tree / "test" / "images").iterdir())) == len(layout.test)


def test_second_run_changes_nothing(tree):
    reorganize(validate(tree))
    before = _snapshot(tree)
    report = reorganize(validate(tree))
    assert report.moved == 0 and report.already_in_place == report.val_images
    assert _snapshot(tree) == before


def test_interrupted_run_is_completed_without_loss_or_duplicates(tree, monkeypatch):
    layout = validate(tree)
    total = count_val_images(tree, layout.wnids)
    real_rename = os.rename
    calls = {"n": 0}

    def crashing_rename(src, dst):
        calls["n"] += 1
        if calls["n"] > 7:
            raise KeyboardInterrupt("simulated crash")
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", crashing_rename)
    with pytest.raises(KeyboardInterrupt):
        reorganize(layout)
    monkeypatch.setattr(os, "rename", real_rename)
    assert count_val_images(tree, layout.wnids) == total  # half-way: nothing lost

    report = reorganize(validate(tree))
    assert report.already_in_place == 7 and report.moved == total - 7
    assert count_val_images(tree, layout.wnids) == total
    names = [p.name for p in (tree / "val").glob("*/images/*")]
    assert len(names) == len(set(names)) == total


def test_missing_file_fails_with_the_line_before_moving_anything(tree):
    layout = validate(tree)
    victim = layout.val[3]
    (tree / "val" / "images" / victim.file_name).unlink()
    with pytest.raises(ReorganizeError, match=f"line 4: {victim.file_name} does not exist"):
        reorganize(layout)
    assert len(list((tree / "val" / "images").iterdir())) == len(layout.val) - 1


def test_file_in_both_places_fails(tree):
    layout = validate(tree)
    a = layout.val[0]
    dst = val_image_path(tree, a.wnid, a.file_name)
    dst.parent.mkdir(parents=True)
    dst.write_bytes(b"copy")
    with pytest.raises(ReorganizeError, match="is both in"):
        reorganize(layout)


def test_unannotated_image_fails(tree):
    (tree / "val" / "images" / "val_999.JPEG").write_bytes(b"x")
    with pytest.raises(ReorganizeError, match=r"no line in val_annotations\.txt, e\.g\. val_999"):
        reorganize(validate(tree))
