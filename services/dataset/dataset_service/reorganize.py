"""Move the val images into one folder per class, so folder-per-class tools can read val.

    val/images/val_<i>.JPEG   ->   val/<wnid>/images/val_<i>.JPEG     (wnid from the annotations)

``val/val_annotations.txt`` stays where it is; the emptied ``val/images/`` is removed (a leftover
``images`` folder would look like a class). The test images are unlabeled and keep their own
folder, ``test/images/`` (one pseudo-class for folder-per-class tools).

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
from dataset_service.files import fsync_dir
from dataset_service.layout import Layout
from dataset_service.layout_names import IMAGES_DIR, VAL_ANNOTATIONS, VAL_DIR


@dataclass(frozen=True)
class ReorganizeReport:
    moved: int
    already_in_place: int
    val_images: int
    test_images: int


def val_image_path(root: Path, wnid: str, file_name: str) -> Path:
    """Where a val image lives once reorganized."""
    return Path(root) / VAL_DIR / wnid / IMAGES_DIR / file_name


def _files(folder: Path) -> set[str]:
    if not folder.is_dir():
        return set()
    return {e.name for e in os.scandir(folder) if e.is_file() and not e.name.startswith(".")}


def count_val_images(root: Path, wnids: list[str]) -> int:
    """Images in ``val/images/`` plus all ``val/<wnid>/images/``."""
    val = Path(root) / VAL_DIR
    return len(_files(val / IMAGES_DIR)) + sum(len(_files(val / w / IMAGES_DIR)) for w in wnids)


def reorganize(
    layout: Layout,
    *,
    progress: Callable[[int, int | None], None] | None = None,
    check_stop: Callable[[], None] | None = None,
) -> ReorganizeReport:
    """Move val images into ``val/<wnid>/images/``; raises :class:`ReorganizeError` naming the
    annotation line at fault before anything moves."""
    root = layout.root
    flat = root / VAL_DIR / IMAGES_DIR
    in_flat = _files(flat)
    before = count_val_images(root, layout.wnids)

    moves: list[tuple[Path, Path]] = []
    annotated: set[str] = set()
    for ann in layout.val:
        annotated.add(ann.file_name)
        src = flat / ann.file_name
        dst = val_image_path(root, ann.wnid, ann.file_name)
        at_src, at_dst = ann.file_name in in_flat, os.path.lexists(dst)
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
        if at_src:
            moves.append((src, dst))
    unannotated = sorted(in_flat - annotated)
    if unannotated:
        raise ReorganizeError(
            f"{len(unannotated)} image(s) in {VAL_DIR}/{IMAGES_DIR}/ have no line in "
            f"{VAL_ANNOTATIONS}, e.g. {unannotated[0]}"
        )
    if before != len(layout.val):
        raise ReorganizeError(
            f"{VAL_DIR}/ holds {before} images but {VAL_ANNOTATIONS} annotates {len(layout.val)}"
        )

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

    after = count_val_images(root, layout.wnids)
    if after != before:
        raise ReorganizeError(f"val image count changed from {before} to {after} while moving")
    return ReorganizeReport(
        moved=len(moves), already_in_place=already, val_images=after, test_images=len(layout.test)
    )
