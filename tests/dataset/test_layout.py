import shutil

import pytest

from dataset_service.errors import LayoutError
from dataset_service.layout import find_root, validate
from dataset_service.layout_names import ROOT_DIR_NAME
from tests.dataset.support import SMALL_SPEC


def test_valid_tree(pristine):
    layout = validate(pristine)
    assert len(layout.wnids) == SMALL_SPEC.classes
    assert layout.wnids == (pristine / "wnids.txt").read_text().split()
    assert set(layout.words) == set(layout.wnids) and all(layout.words.values())
    assert {w: len(f) for w, f in layout.train.items()} == {
        w: SMALL_SPEC.train_per_class for w in layout.wnids
    }
    assert len(layout.val) == SMALL_SPEC.val_total
    assert layout.val[0].line_no == 1 and layout.val[0].wnid in layout.wnids
    assert len(layout.test) == SMALL_SPEC.test_images


def test_find_root(pristine):
    assert find_root(pristine.parent) == pristine
    assert find_root(pristine) == pristine


def _append(path, text):
    with open(path, "a") as f:
        f.write(text)


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda t: (t / "wnids.txt").unlink(), "wnids.txt is missing"),
        (lambda t: (t / "words.txt").unlink(), "words.txt is missing"),
        (lambda t: _append(t / "wnids.txt", "bogus\n"), "wnids.txt line 5: 'bogus'"),
        (lambda t: _append(t / "wnids.txt", "n12345678\n"), "words.txt has no line"),
        (lambda t: _append(t / "words.txt", "no tab here\n"), "words.txt line .*wnid<TAB>names"),
        (lambda t: shutil.rmtree(t / "test"), "test/images/ is missing"),
        (lambda t: (t / "val" / "val_annotations.txt").unlink(), "val_annotations.txt is miss"),
        (
            lambda t: _append(t / "val" / "val_annotations.txt", "val_99.JPEG\n"),
            r"val_annotations.txt line 21 is malformed.*val_99",
        ),
        (
            lambda t: _append(t / "val" / "val_annotations.txt", "val_99.JPEG\tn1\t1\t2\tx\t4\n"),
            "line 21 is malformed",
        ),
        (
            lambda t: _append(
                t / "val" / "val_annotations.txt", "val_99.JPEG\tn99999999\t0\t0\t1\t1\n"
            ),
            "line 21: wnid 'n99999999' is not in wnids.txt",
        ),
    ],
)
def test_broken_pieces_are_named(tree, breakage, message):
    breakage(tree)
    with pytest.raises(LayoutError, match=message):
        validate(tree)


def test_missing_train_folder_is_named(tree):
    wnid = (tree / "wnids.txt").read_text().split()[2]
    shutil.rmtree(tree / "train" / wnid)
    with pytest.raises(LayoutError, match=f"train/{wnid}/images/ is missing"):
        validate(tree)


def test_missing_root_is_named(tmp_path):
    (tmp_path / ROOT_DIR_NAME).mkdir()
    with pytest.raises(LayoutError, match=r"wnids\.txt is missing"):
        find_root(tmp_path)
