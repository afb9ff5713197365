"""Move the val images into one folder per class, so folder-per-class tools can read val.

    val/images/val_<i>.JPEG   ->   val/<wnid>/images/val_<i>.JPEG     (wnid from the annotations)

``val/val_annotations.txt`` stays where it is; the emptied ``val/images/`` is removed (a leftover
``images`` folder would look like a class). The test images are unlabeled and keep their own
folder, ``test/images/`` (one pseudo-class for folder-per-class tools).

:func:`locate_val` does every check and says where each annotated image is now; it is all a
zip read in place needs (the records carry the labels, nothing moves). :func:`reorganize` then
moves the images of a folder on disk.

Crash safety is rename-based: each image moves with one ``os.rename`` inside the same file
system, which is atomic, so at every instant an image is in exactly one of its two places and
none is ever lost or duplicated. A run after a crash finds some images moved and some not, and
moves the rest; a run after completion moves nothing (idempotent). Everything is checked before
the first move (each annotated file must be in exactly one place), and the images are counted
before and after.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dataset_service.errors import ReorganizeError
from dataset_service.layout import Layout
from dataset_service.layout_names import IMAGES_DIR, VAL_ANNOTATIONS, VAL_DIR
from dataset_service.tree import DiskTree, Tree
from datavolume.files import fsync_dir


@dataclass(frozen=True)
class ReorganizeReport:
    moved: int
    already_in_place: int
    val_images: int
    test_images: int


def sorted_val_rel(wnid: str, file_name: str) -> str:
    """Where a val image lives once reorganized, relative to the tree's root."""
    return f"{VAL_DIR}/{wnid}/{IMAGES_DIR}/{file_name}"


def val_image_path(root: Path, wnid: str, file_name: str) -> Path:
    """Where a val image lives once reorganized."""
    return Path(root) / sorted_val_rel(wnid, file_name)


def _flat(file_name: str) -> str:
    return f"{VAL_DIR}/{IMAGES_DIR}/{file_name}"


def count_val_images(tree: Tree | Path, wnids: list[str]) -> int:
    """Images in ``val/images/`` plus all ``val/<wnid>/images/``."""
    tree = DiskTree(tree) if isinstance(tree, Path) else tree
    return len(tree.files(f"{VAL_DIR}/{IMAGES_DIR}")) + sum(
        len(tree.files(f"{VAL_DIR}/{w}/{IMAGES_DIR}")) for w in wnids
    )


def locate_val(layout: Layout) -> list[str]:
    """Where each annotated val image is (tree-relative, in annotation order): in
    ``val/images/`` or already in ``val/<wnid>/images/``. Raises :class:`ReorganizeError`
    naming the annotation line at fault when an image is in both places or in neither, and when
    an image has no annotation."""
    tree = layout.tree
    in_flat = set(tree.files(f"{VAL_DIR}/{IMAGES_DIR}"))
    in_class = {w: set(tree.files(f"{VAL_DIR}/{w}/{IMAGES_DIR}")) for w in layout.wnids}
    located: list[str] = []
    annotated: set[str] = set()
    for ann in layout.val:
        annotated.add(ann.file_name)
        at_src, at_dst = ann.file_name in in_flat, ann.file_name in in_class[ann.wnid]
        where = f"{VAL_DIR}/{VAL_ANNOTATIONS} line {ann.line_no}"
        if at_src and at_dst:
            raise ReorganizeError(
                f"{where}: {ann.file_name} is both in {VAL_DIR}/{IMAGES_DIR}/ and "
                f"{VAL_DIR}/{ann.wnid}/{IMAGES_DIR}/: {ann.line!r}"
            )
        if not at_src and not at_dst:
            raise ReorganizeError(
                f"{where}: {ann.file_name} does not exist (neither in {VAL_DIR}/{IMAGES_DIR}/ "
                f"nor in {VAL_DIR}/{ann.wnid}/{IMAGES_DIR}/): {ann.line!r}"
            )
        located.append(_flat(ann.file_name) if at_src else sorted_val_rel(ann.wnid, ann.file_name))
    unannotated = sorted(in_flat - annotated)
    if unannotated:
        raise ReorganizeError(
            f"{len(unannotated)} image(s) in {VAL_DIR}/{IMAGES_DIR}/ have no line in "
            f"{VAL_ANNOTATIONS}, e.g. {unannotated[0]}"
        )
    held = len(in_flat) + sum(len(names) for names in in_class.values())
    if held != len(layout.val):
        raise ReorganizeError(
            f"{VAL_DIR}/ holds {held} images but {VAL_ANNOTATIONS} annotates {len(layout.val)}"
        )
    return located


def reorganize(
    layout: Layout,
    *,
    progress: Callable[[int, int | None], None] | None = None,
    check_stop: Callable[[], None] | None = None,
) -> ReorganizeReport:
    """Move val images into ``val/<wnid>/images/`` of a tree on disk; raises
    :class:`ReorganizeError` naming the annotation line at fault before anything moves."""
    if not isinstance(layout.tree, DiskTree):
        raise TypeError("only a tree on disk can be reorganized")
    root = layout.tree.root
    flat = root / VAL_DIR / IMAGES_DIR
    before = count_val_images(layout.tree, layout.wnids)
    moves = [
        (root / here, val_image_path(root, ann.wnid, ann.file_name))
        for ann, here in zip(layout.val, locate_val(layout), strict=True)
        if here == _flat(ann.file_name)
    ]

    total = len(layout.val)
    already = total - len(moves)
    touched: set[Path] = set()
    for wnid in {dst.parent for _, dst in moves}:
        wnid.mkdir(parents=True, exist_ok=True)
    for i, (src, dst) in enumerate(moves, start=1):
        os.rename(src, dst)
        touched.add(dst.parent)
        if progress is not None and i % 256 == 0:
            progress(already + i, total)
        if check_stop is not None and i % 256 == 0:
            check_stop()
    for folder in touched:
        fsync_dir(folder)
    if moves:
        fsync_dir(flat)
    if flat.is_dir() and not any(flat.iterdir()):
        flat.rmdir()
    if progress is not None:
        progress(total, total)

    after = count_val_images(layout.tree, layout.wnids)
    if after != before:
        raise ReorganizeError(f"val image count changed from {before} to {after} while moving")
    return ReorganizeReport(
        moved=len(moves), already_in_place=already, val_images=after, test_images=len(layout.test)
    )
