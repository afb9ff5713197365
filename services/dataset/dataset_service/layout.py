"""Validate a tiny-imagenet-200 tree and list what it holds.

Reads through :class:`dataset_service.tree.Tree`, so a folder and a zip read in place are
checked by the same code. Works on the tree as shipped (``val/images/``) and after
:mod:`dataset_service.reorganize` (``val/<wnid>/images/``), or half-way between: where a val
image lies is the reorganizer's business; here the annotations are parsed and checked against
``wnids.txt``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from dataset_service.errors import LayoutError
from dataset_service.layout_names import (
    IMAGES_DIR,
    ROOT_DIR_NAME,
    TEST_DIR,
    TRAIN_DIR,
    VAL_ANNOTATIONS,
    VAL_DIR,
    WNIDS_FILE,
    WORDS_FILE,
)
from dataset_service.tree import DiskTree, Tree

WNID_PATTERN = re.compile(r"^n\d{8}$")
_FILE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class ValAnnotation:
    file_name: str
    wnid: str
    line_no: int  # 1-based line in val_annotations.txt
    line: str


@dataclass(frozen=True)
class Layout:
    """What a valid tree holds. Class index = position in ``wnids`` (wnids.txt line order)."""

    tree: Tree
    wnids: list[str]
    words: dict[str, str]
    train: dict[str, list[str]]  # wnid -> image file names (sorted)
    val: list[ValAnnotation]  # in annotation-file order
    test: list[str]  # image file names in test/images (sorted)

    def class_index(self) -> dict[str, int]:
        return {w: i for i, w in enumerate(self.wnids)}


def find_root(path: Path) -> Path:
    """The folder holding ``wnids.txt``: ``path`` itself or its ``tiny-imagenet-200/``."""
    path = Path(path)
    for candidate in (path, path / ROOT_DIR_NAME):
        if (candidate / WNIDS_FILE).is_file():
            return candidate
    subdirs = [p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if len(subdirs) == 1 and (subdirs[0] / WNIDS_FILE).is_file():
        return subdirs[0]
    raise LayoutError(
        f"{WNIDS_FILE} is missing: neither at the top nor in a {ROOT_DIR_NAME}/ (or single) folder"
    )


def _lines(tree: Tree, rel: str, what: str) -> list[str]:
    try:
        return tree.read_text(rel).splitlines()
    except FileNotFoundError:
        raise LayoutError(f"{what} is missing ({rel.rsplit('/', 1)[-1]} not found)") from None
    except UnicodeDecodeError as exc:
        raise LayoutError(f"{what} is not UTF-8 text: {exc}") from exc


def read_wnids(tree: Tree) -> list[str]:
    wnids: list[str] = []
    seen: set[str] = set()
    for no, raw in enumerate(_lines(tree, WNIDS_FILE, WNIDS_FILE), start=1):
        wnid = raw.strip()
        if not wnid:
            continue
        if not WNID_PATTERN.match(wnid):
            raise LayoutError(f"{WNIDS_FILE} line {no}: {raw!r} is not a WordNet id (nXXXXXXXX)")
        if wnid in seen:
            raise LayoutError(f"{WNIDS_FILE} line {no}: {wnid} is listed twice")
        seen.add(wnid)
        wnids.append(wnid)
    if not wnids:
        raise LayoutError(f"{WNIDS_FILE} is empty")
    return wnids


def read_words(tree: Tree, wnids: list[str]) -> dict[str, str]:
    wanted = set(wnids)
    words: dict[str, str] = {}
    for no, raw in enumerate(_lines(tree, WORDS_FILE, WORDS_FILE), start=1):
        if not raw.strip():
            continue
        wnid, tab, names = raw.partition("\t")
        if not tab or not wnid:
            raise LayoutError(f"{WORDS_FILE} line {no}: expected 'wnid<TAB>names', got {raw!r}")
        if wnid in wanted:
            words[wnid] = names.strip()
    missing = [w for w in wnids if w not in words]
    if missing:
        raise LayoutError(
            f"{WORDS_FILE} has no line for {len(missing)} class(es) of {WNIDS_FILE}, "
            f"e.g. {missing[0]}"
        )
    return words


def read_train(tree: Tree, wnids: list[str]) -> dict[str, list[str]]:
    if not tree.is_dir(TRAIN_DIR):
        raise LayoutError(f"{TRAIN_DIR}/ is missing")
    train: dict[str, list[str]] = {}
    for wnid in wnids:
        folder = f"{TRAIN_DIR}/{wnid}/{IMAGES_DIR}"
        if not tree.is_dir(folder):
            raise LayoutError(f"{TRAIN_DIR}/{wnid}/{IMAGES_DIR}/ is missing")
        files = tree.files(folder)
        if not files:
            raise LayoutError(f"{TRAIN_DIR}/{wnid}/{IMAGES_DIR}/ has no images")
        train[wnid] = files
    return train


def read_val_annotations(tree: Tree, wnids: list[str]) -> list[ValAnnotation]:
    """Parse ``val/val_annotations.txt``: ``file<TAB>wnid[<TAB>x0<TAB>y0<TAB>x1<TAB>y1]``."""
    known = set(wnids)
    where = f"{VAL_DIR}/{VAL_ANNOTATIONS}"
    annotations: list[ValAnnotation] = []
    seen: dict[str, int] = {}
    for no, raw in enumerate(_lines(tree, where, where), start=1):
        if not raw.strip():
            continue
        fields = raw.rstrip("\r").split("\t")
        bad_box = len(fields) == 6 and not all(f.strip().lstrip("-").isdigit() for f in fields[2:])
        if len(fields) not in (2, 6) or bad_box or not _FILE_PATTERN.match(fields[0]):
            raise LayoutError(
                f"{where} line {no} is malformed (expected 'file<TAB>wnid<TAB>x0<TAB>y0<TAB>x1"
                f"<TAB>y1'): {raw!r}"
            )
        file_name, wnid = fields[0], fields[1].strip()
        if wnid not in known:
            raise LayoutError(f"{where} line {no}: wnid {wnid!r} is not in {WNIDS_FILE}: {raw!r}")
        if file_name in seen:
            raise LayoutError(
                f"{where} line {no}: {file_name} was already annotated on line {seen[file_name]}"
            )
        seen[file_name] = no
        annotations.append(ValAnnotation(file_name, wnid, no, raw))
    if not annotations:
        raise LayoutError(f"{where} has no annotations")
    return annotations


def read_test(tree: Tree) -> list[str]:
    folder = f"{TEST_DIR}/{IMAGES_DIR}"
    if not tree.is_dir(folder):
        raise LayoutError(f"{TEST_DIR}/{IMAGES_DIR}/ is missing")
    return tree.files(folder)


def validate(tree: Tree | Path) -> Layout:
    """Check ``tree`` (a :class:`Tree`, or the path of the folder holding wnids.txt);
    :class:`LayoutError` names the first missing or malformed piece."""
    if isinstance(tree, (str, Path)):
        tree = DiskTree(Path(tree))
    wnids = read_wnids(tree)
    words = read_words(tree, wnids)
    train = read_train(tree, wnids)
    val = read_val_annotations(tree, wnids)
    test = read_test(tree)
    return Layout(tree=tree, wnids=wnids, words=words, train=train, val=val, test=test)
