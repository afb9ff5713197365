"""A synthetic stand-in for tiny-imagenet-200, written in exactly the archive's layout.

The real ``tiny-imagenet-200.zip`` cannot be downloaded everywhere, so this module (and the
``tiny-imagenet-synth`` command) writes a tree with the same files, names and quirks::

    tiny-imagenet-200/
      wnids.txt  words.txt
      train/<wnid>/images/<wnid>_<i>.JPEG     train/<wnid>/<wnid>_boxes.txt
      val/images/val_<i>.JPEG                 val/val_annotations.txt
      test/images/test_<i>.JPEG

What the images look like: every class has a signature, two oriented sine gratings (a main
one at a class angle and frequency, a weaker one at another) drawn in a class colour pair, and
every image jitters it: random phase, slightly different angle and frequency, colours pulled
towards random ones, brightness and noise. The pattern fills the image's bounding box (which is
what the box files record); outside it lies a smooth random background. The colours alone tell
the classes apart only roughly; the stripes make them clearly learnable, in grayscale too.

The archive's oddities are reproduced: about ``grayscale_fraction`` of the JPEGs are
single-channel, and the training set holds at least one CMYK JPEG and one PNG file saved under
a ``.JPEG`` name (whenever it has three images or more).

Everything depends only on the spec: the same spec gives byte-identical files, whatever the
number of processes, and :func:`pack_zip` makes a byte-identical archive of them.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from dataset_service.layout_names import (
    ARCHIVE_NAME,
    IMAGE_SIZE,
    IMAGES_DIR,
    ROOT_DIR_NAME,
    TEST_DIR,
    TRAIN_DIR,
    VAL_ANNOTATIONS,
    VAL_DIR,
    WNIDS_FILE,
    WORDS_FILE,
    box_line,
    boxes_file_name,
    test_image_name,
    train_image_name,
    val_annotation_line,
    val_image_name,
)
from dataset_service.processes import worker_context

__all__ = [
    "MAX_CLASSES",
    "SyntheticSpec",
    "generate",
    "main",
    "pack_zip",
]

MAX_CLASSES = 1000
EXTRA_WORDS_PER_CLASS = 2
"""words.txt lists this many unrelated wnids per class besides the classes themselves."""

_CHUNK = 500
"""Validation and test images per task. Fixed (not derived from the process count) so the
random streams, hence the bytes written, do not depend on how the work is split."""
_BATCH = 128
"""Images rendered per numpy batch inside a task (bounds the memory a worker uses)."""

_TRAIN, _VAL, _TEST = 1, 2, 3
_STREAM_WNIDS, _STREAM_CLASSES, _STREAM_VAL_ORDER, _STREAM_TEST_LABELS, _STREAM_WORDS = range(
    10, 15
)

_RGB, _GRAY, _CMYK, _PNG = 0, 1, 2, 3

_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class SyntheticSpec:
    """What to generate. The defaults give the real dataset's sizes (100k/10k/10k images)."""

    classes: int = 200
    train_per_class: int = 500
    val_per_class: int = 50
    test_images: int = 10_000
    seed: int = 0
    quality: int = 85
    grayscale_fraction: float = 0.02

    def __post_init__(self) -> None:
        if not 1 <= self.classes <= MAX_CLASSES:
            raise ValueError(f"classes must be in 1..{MAX_CLASSES}, got {self.classes}")
        for name in ("train_per_class", "val_per_class", "test_images", "seed"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 1 <= self.quality <= 95:
            raise ValueError(f"quality must be in 1..95, got {self.quality}")
        if not 0.0 <= self.grayscale_fraction <= 1.0:
            raise ValueError(f"grayscale_fraction must be in [0, 1], got {self.grayscale_fraction}")

    @property
    def train_total(self) -> int:
        return self.classes * self.train_per_class

    @property
    def val_total(self) -> int:
        return self.classes * self.val_per_class

    @property
    def total_images(self) -> int:
        return self.train_total + self.val_total + self.test_images


# --------------------------------------------------------------------------- class identities

_ADJECTIVES_TEXT = (
    "striped banded barred ribbed lined grooved ridged corded pleated fluted rippled wavy "
    "crested dappled speckled mottled tawny russet amber ochre azure cobalt olive slate "
    "umber crimson golden silver lesser greater common northern southern alpine marsh "
    "desert"
)
_ADJECTIVES = _ADJECTIVES_TEXT.split()
_NOUNS_TEXT = (
    "warbler finch heron lizard gecko beetle moth trout perch carp fern moss thistle sedge "
    "shell cone gourd lantern kettle basket ladle bellows spindle loom anvil bucket sieve "
    "lattice grille radiator corduroy awning blind shutter fence trellis zebra tabby "
    "marlin"
)
_NOUNS = _NOUNS_TEXT.split()


def _stream(spec: SyntheticSpec, *key: int) -> np.random.Generator:
    return np.random.default_rng([spec.seed, *key])


def make_wnids(spec: SyntheticSpec) -> tuple[list[str], list[str]]:
    """(class wnids in ``wnids.txt`` order, unrelated extra wnids for ``words.txt``)."""
    n = spec.classes
    rng = _stream(spec, _STREAM_WNIDS)
    ids = rng.choice(10**7, size=n * (1 + EXTRA_WORDS_PER_CLASS), replace=False)
    wnids = [f"n0{v:07d}" for v in ids.tolist()]
    return wnids[:n], wnids[n:]


def _words_lines(spec: SyntheticSpec, class_wnids: list[str], extra: list[str]) -> list[str]:
    rng = _stream(spec, _STREAM_WORDS)
    lines = []
    for wnid in sorted(class_wnids + extra):
        names = [
            f"{_ADJECTIVES[rng.integers(len(_ADJECTIVES))]} {_NOUNS[rng.integers(len(_NOUNS))]}"
            for _ in range(int(rng.integers(1, 4)))
        ]
        lines.append(f"{wnid}\t{', '.join(names)}\n")
    return lines


@dataclass(frozen=True)
class _ClassTable:
    theta1: np.ndarray  # main grating angle (radians)
    freq1: np.ndarray  # main grating frequency (cycles per image width)
    theta2: np.ndarray
    freq2: np.ndarray
    amp2: np.ndarray  # weight of the second grating
    color_a: np.ndarray  # (classes, 3)
    color_b: np.ndarray


def _class_table(spec: SyntheticSpec) -> _ClassTable:
    n = spec.classes
    rng = _stream(spec, _STREAM_CLASSES)
    k = np.arange(n, dtype=np.float64)
    # A 2-D low-discrepancy (R2) sequence, shifted by the seed, spreads the (angle, frequency)
    # signatures of the classes evenly: close classes are rare, whatever their number.
    shift = rng.random(2)
    u = (shift[0] + k * 0.7548776662466927) % 1.0
    v = (shift[1] + k * 0.5698402909980532) % 1.0
    theta1 = u * np.pi
    freq1 = 2.5 + 9.5 * v
    theta2 = theta1 + rng.uniform(np.pi / 4, 3 * np.pi / 4, n)
    freq2 = rng.uniform(2.0, 14.0, n)
    amp2 = rng.uniform(0.25, 0.6, n)
    color_a = rng.uniform(25, 230, (n, 3))
    color_b = rng.uniform(25, 230, (n, 3))
    return _ClassTable(theta1, freq1, theta2, freq2, amp2, color_a, color_b)


# --------------------------------------------------------------------------- pixels

_AXIS = np.arange(IMAGE_SIZE, dtype=np.float32)
_CENTRED = _AXIS - (IMAGE_SIZE - 1) / 2


def _upsample_matrix(coarse: int) -> np.ndarray:
    """(IMAGE_SIZE, coarse) bilinear interpolation weights."""
    pos = np.linspace(0, coarse - 1, IMAGE_SIZE)
    lo = np.minimum(np.floor(pos).astype(int), coarse - 2)
    frac = pos - lo
    m = np.zeros((IMAGE_SIZE, coarse), dtype=np.float32)
    m[np.arange(IMAGE_SIZE), lo] = 1 - frac
    m[np.arange(IMAGE_SIZE), lo + 1] = frac
    return m


_BG_COARSE = 5
_BG_UP = _upsample_matrix(_BG_COARSE)


def _grating(theta: np.ndarray, freq: np.ndarray, phase: np.ndarray) -> np.ndarray:
    k = (2 * np.pi / IMAGE_SIZE) * freq
    kx = (k * np.cos(theta)).astype(np.float32)[:, None, None]
    ky = (k * np.sin(theta)).astype(np.float32)[:, None, None]
    ph = phase.astype(np.float32)[:, None, None]
    return np.sin(kx * _CENTRED[None, None, :] + ky * _CENTRED[None, :, None] + ph)


def _render(
    rng: np.random.Generator, cls: np.ndarray, table: _ClassTable
) -> tuple[np.ndarray, np.ndarray]:
    """Images (B, 64, 64, 3) uint8 of the classes ``cls`` and their boxes (B, 4): x0 y0 x1 y1."""
    b = cls.size
    s = IMAGE_SIZE
    two_pi = 2 * np.pi

    # The class signature, jittered: two gratings with random phases.
    g1 = _grating(
        table.theta1[cls] + rng.normal(0.0, 0.06, b),
        table.freq1[cls] * rng.uniform(0.93, 1.07, b),
        rng.uniform(0, two_pi, b),
    )
    g2 = _grating(
        table.theta2[cls] + rng.normal(0.0, 0.06, b),
        table.freq2[cls] * rng.uniform(0.93, 1.07, b),
        rng.uniform(0, two_pi, b),
    )
    amp2 = table.amp2[cls].astype(np.float32)[:, None, None]
    pattern = (g1 + amp2 * g2) / (1 + amp2)  # in [-1, 1]

    # Colours: the class pair, pulled towards random colours by a random amount.
    def colour(base: np.ndarray) -> np.ndarray:
        mix = rng.uniform(0.3, 0.8, (b, 1))
        return (mix * base[cls] + (1 - mix) * rng.uniform(20, 235, (b, 3))).astype(np.float32)

    col_a, col_b = colour(table.color_a), colour(table.color_b)
    t = (0.5 + 0.5 * pattern)[..., None]
    obj = (col_b - col_a)[:, None, None, :] * t
    obj += col_a[:, None, None, :]
    pattern *= 0.25
    pattern += 1
    obj *= pattern[..., None]  # luminance stripes: the pattern survives grayscale

    # The object's box; a smooth random background outside it.
    w = rng.integers(s * 9 // 16, s + 1, b)
    h = rng.integers(s * 9 // 16, s + 1, b)
    x0 = rng.integers(0, s - w + 1)
    y0 = rng.integers(0, s - h + 1)
    x1, y1 = x0 + w - 1, y0 + h - 1
    inside_x = (_AXIS[None, :] >= x0[:, None]) & (_AXIS[None, :] <= x1[:, None])
    inside_y = (_AXIS[None, :] >= y0[:, None]) & (_AXIS[None, :] <= y1[:, None])
    inside = inside_y[:, :, None] & inside_x[:, None, :]
    coarse = rng.uniform(15, 240, (b, 3, _BG_COARSE, _BG_COARSE)).astype(np.float32)
    bg = (_BG_UP @ coarse @ _BG_UP.T).transpose(0, 2, 3, 1)  # (b, s, s, 3)
    img = np.where(inside[..., None], obj, bg)

    # Photometric jitter and sensor-like noise (which also gives the JPEGs a realistic size).
    img *= rng.uniform(0.8, 1.2, (b, 1, 1, 1)).astype(np.float32)
    # Uniform noise (standard deviation 5..11): five times cheaper to draw than Gaussian noise.
    noise = rng.random(img.shape, dtype=np.float32)
    noise -= 0.5
    noise *= (rng.uniform(5.0, 11.0, (b, 1, 1, 1)) * np.sqrt(12)).astype(np.float32)
    img += noise
    img += 0.5  # round half up on the cast below
    np.clip(img, 0, 255, out=img)
    pixels = img.astype(np.uint8)
    boxes = np.stack([x0, y0, x1, y1], axis=1)
    return pixels, boxes


def _encode(pixels: np.ndarray, kind: int, quality: int) -> bytes:
    image = Image.fromarray(pixels)
    buf = io.BytesIO()
    if kind == _PNG:
        image.save(buf, format="PNG")
    else:
        if kind == _GRAY:
            image = image.convert("L")
        elif kind == _CMYK:
            image = image.convert("CMYK")
        image.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _forced_kinds(split: int, spec: SyntheticSpec) -> dict[int, int]:
    """Split-wide image indices whose kind is fixed, so every oddity exists even when tiny."""
    if split == _TRAIN:
        n = spec.train_total
        if n >= 3:
            return {0: _GRAY, n // 3: _CMYK, 2 * n // 3: _PNG}
        return {0: _GRAY} if n else {}
    return {0: _GRAY}  # at least one grayscale image in val and in test


# --------------------------------------------------------------------------- tasks


@dataclass(frozen=True)
class _Task:
    split: int
    chunk: int
    start: int  # index of the chunk's first image (within its class for train, else in split)
    labels: np.ndarray  # class of each image


_STATE: dict[str, object] = {}


def _init_worker(spec: SyntheticSpec, out_dir: str, wnids: list[str]) -> None:
    _STATE.update(spec=spec, out=out_dir, wnids=wnids, table=_class_table(spec))


def _run_task(task: _Task) -> tuple[int, int, int, list[str]]:
    spec: SyntheticSpec = _STATE["spec"]  # type: ignore[assignment]
    out: str = _STATE["out"]  # type: ignore[assignment]
    wnids: list[str] = _STATE["wnids"]  # type: ignore[assignment]
    table: _ClassTable = _STATE["table"]  # type: ignore[assignment]
    rng = _stream(spec, task.split, task.chunk)
    count = task.labels.size

    kinds = np.where(rng.random(count) < spec.grayscale_fraction, _GRAY, _RGB)
    offset = task.chunk * spec.train_per_class if task.split == _TRAIN else task.start
    for index, kind in _forced_kinds(task.split, spec).items():
        if offset <= index < offset + count:
            kinds[index - offset] = kind

    if task.split == _TRAIN:
        wnid = wnids[task.chunk]
        folder = os.path.join(out, TRAIN_DIR, wnid)
        names = [train_image_name(wnid, task.start + j) for j in range(count)]
        image_dir = os.path.join(folder, IMAGES_DIR)
    elif task.split == _VAL:
        names = [val_image_name(task.start + j) for j in range(count)]
        image_dir = os.path.join(out, VAL_DIR, IMAGES_DIR)
    else:
        names = [test_image_name(task.start + j) for j in range(count)]
        image_dir = os.path.join(out, TEST_DIR, IMAGES_DIR)

    lines: list[str] = []
    for lo in range(0, count, _BATCH):
        hi = min(lo + _BATCH, count)
        pixels, boxes = _render(rng, task.labels[lo:hi], table)
        for j in range(hi - lo):
            data = _encode(pixels[j], int(kinds[lo + j]), spec.quality)
            with open(os.path.join(image_dir, names[lo + j]), "wb") as f:
                f.write(data)
            box = boxes[j].tolist()
            if task.split == _TRAIN:
                lines.append(box_line(names[lo + j], box))
            elif task.split == _VAL:
                label_wnid = wnids[int(task.labels[lo + j])]
                lines.append(val_annotation_line(names[lo + j], label_wnid, box))

    if task.split == _TRAIN:
        with open(os.path.join(folder, boxes_file_name(wnid)), "w", newline="\n") as f:
            f.writelines(lines)
        lines = []
    return task.split, task.chunk, count, lines


def _tasks(spec: SyntheticSpec) -> list[_Task]:
    tasks = [
        _Task(_TRAIN, k, 0, np.full(spec.train_per_class, k, dtype=np.int64))
        for k in range(spec.classes)
    ]
    val_labels = np.repeat(np.arange(spec.classes, dtype=np.int64), spec.val_per_class)
    val_labels = _stream(spec, _STREAM_VAL_ORDER).permutation(val_labels)
    test_labels = _stream(spec, _STREAM_TEST_LABELS).integers(0, spec.classes, spec.test_images)
    for split, labels in ((_VAL, val_labels), (_TEST, test_labels)):
        for chunk, start in enumerate(range(0, labels.size, _CHUNK)):
            tasks.append(_Task(split, chunk, start, labels[start : start + _CHUNK]))
    return tasks


def _write_tree(
    out: Path,
    spec: SyntheticSpec,
    processes: int | None,
    progress: Callable[[int, int], None] | None,
) -> None:
    wnids, extra = make_wnids(spec)
    out.mkdir()
    (out / WNIDS_FILE).write_text("".join(f"{w}\n" for w in wnids), newline="\n")
    (out / WORDS_FILE).write_text("".join(_words_lines(spec, wnids, extra)), newline="\n")
    for wnid in wnids:
        (out / TRAIN_DIR / wnid / IMAGES_DIR).mkdir(parents=True)
    (out / VAL_DIR / IMAGES_DIR).mkdir(parents=True)
    (out / TEST_DIR / IMAGES_DIR).mkdir(parents=True)

    tasks = _tasks(spec)
    total = spec.total_images
    done = 0
    val_lines: dict[int, list[str]] = {}
    if progress:
        progress(0, total)

    def collect(result: tuple[int, int, int, list[str]]) -> None:
        nonlocal done
        split, chunk, count, lines = result
        if split == _VAL:
            val_lines[chunk] = lines
        done += count
        if progress:
            progress(done, total)

    processes = max(1, min(processes or os.cpu_count() or 1, len(tasks)))
    initargs = (spec, str(out), wnids)
    if processes == 1:
        saved = dict(_STATE)
        try:
            _init_worker(*initargs)
            for task in tasks:
                collect(_run_task(task))
        finally:
            _STATE.clear()
            _STATE.update(saved)
    else:
        with worker_context().Pool(processes, _init_worker, initargs) as pool:
            for result in pool.imap_unordered(_run_task, tasks):
                collect(result)

    annotations = "".join(line for chunk in sorted(val_lines) for line in val_lines[chunk])
    (out / VAL_DIR / VAL_ANNOTATIONS).write_text(annotations, newline="\n")


# --------------------------------------------------------------------------- public API


def generate(
    root: Path | str,
    spec: SyntheticSpec = SyntheticSpec(),
    *,
    processes: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    zip_path: Path | str | None = None,
) -> Path:
    """Write ``root/tiny-imagenet-200/`` for ``spec`` and return that path.

    ``processes``: worker processes (default: one per CPU); the output does not depend on it.
    ``progress(done, total)`` is called, in this process, as images get written.
    ``zip_path``: also pack the tree into that archive (see :func:`pack_zip`).
    The tree is built beside the target and renamed into place at the end, so a failure leaves
    no half-written dataset. Refuses (``FileExistsError``) to write into a non-empty target or
    over an existing archive.
    """
    root = Path(root)
    target = root / ROOT_DIR_NAME
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise FileExistsError(f"refusing to overwrite {target}: it exists and is not empty")
    if zip_path is not None and Path(zip_path).exists():
        raise FileExistsError(f"refusing to overwrite the existing archive {zip_path}")
    root.mkdir(parents=True, exist_ok=True)
    partial = root / f".{ROOT_DIR_NAME}.partial-{os.getpid()}"
    if partial.exists():
        shutil.rmtree(partial)
    try:
        _write_tree(partial, spec, processes, progress)
        if target.exists():
            target.rmdir()
        partial.rename(target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if zip_path is not None:
        pack_zip(target, Path(zip_path))
    return target


def _zip_entries(directory: Path, arc_prefix: str) -> list[tuple[str, Path | None]]:
    """(archive name, file or None for a folder), folders before their contents, by name."""
    entries: list[tuple[str, Path | None]] = [(f"{arc_prefix}/", None)]
    for child in sorted(directory.iterdir(), key=lambda p: p.name):
        name = f"{arc_prefix}/{child.name}"
        if child.is_dir():
            entries.extend(_zip_entries(child, name))
        else:
            entries.append((name, child))
    return entries


def pack_zip(dataset_dir: Path | str, zip_path: Path | str) -> Path:
    """Pack ``dataset_dir`` into ``zip_path`` under the top folder ``tiny-imagenet-200/``.

    Entries are stored (JPEGs do not compress), in a fixed order with fixed timestamps and
    permissions, so the same tree always gives a byte-identical archive.
    """
    dataset_dir, zip_path = Path(dataset_dir), Path(zip_path)
    if not dataset_dir.is_dir():
        raise NotADirectoryError(f"{dataset_dir} is not a directory")
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    partial = zip_path.with_name(f".{zip_path.name}.partial-{os.getpid()}")
    try:
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_STORED) as zf:
            for name, path in _zip_entries(dataset_dir, ROOT_DIR_NAME):
                info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
                info.create_system = 3  # unix, whatever the platform writing it
                info.compress_type = zipfile.ZIP_STORED
                if path is None:
                    info.external_attr = (0o40755 << 16) | 0x10
                    zf.writestr(info, b"")
                else:
                    info.external_attr = 0o100644 << 16
                    zf.writestr(info, path.read_bytes())
        partial.replace(zip_path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return zip_path


# --------------------------------------------------------------------------- command line


def _parser() -> argparse.ArgumentParser:
    d = SyntheticSpec()
    p = argparse.ArgumentParser(
        prog="tiny-imagenet-synth",
        description="Write a synthetic dataset in the exact layout of tiny-imagenet-200 "
        f"(OUT_DIR/{ROOT_DIR_NAME}/, and with --zip OUT_DIR/{ARCHIVE_NAME}).",
    )
    p.add_argument("out_dir", metavar="OUT_DIR", type=Path)
    p.add_argument("--classes", type=int, default=d.classes, help="default: %(default)s")
    p.add_argument("--train-per-class", type=int, default=d.train_per_class, metavar="N")
    p.add_argument("--val-per-class", type=int, default=d.val_per_class, metavar="N")
    p.add_argument("--test", type=int, default=d.test_images, metavar="N", help="test images")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--quality", type=int, default=d.quality, help="JPEG quality")
    p.add_argument("--grayscale-fraction", type=float, default=d.grayscale_fraction)
    p.add_argument("--zip", action="store_true", help=f"also write OUT_DIR/{ARCHIVE_NAME}")
    p.add_argument("--processes", type=int, default=None, help="default: one per CPU")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        spec = SyntheticSpec(
            classes=args.classes,
            train_per_class=args.train_per_class,
            val_per_class=args.val_per_class,
            test_images=args.test,
            seed=args.seed,
            quality=args.quality,
            grayscale_fraction=args.grayscale_fraction,
        )
    except ValueError as e:
        print(f"tiny-imagenet-synth: error: {e}", file=sys.stderr)
        return 2

    started = time.monotonic()
    last = [-1]

    def report(done: int, total: int) -> None:
        percent = 100 * done // max(total, 1)
        if percent // 5 != last[0] // 5:
            last[0] = percent
            print(f"{done}/{total} images ({percent}%)", file=sys.stderr, flush=True)

    zip_path = args.out_dir / ARCHIVE_NAME if args.zip else None
    try:
        target = generate(
            args.out_dir, spec, processes=args.processes, progress=report, zip_path=zip_path
        )
    except (FileExistsError, NotADirectoryError) as e:
        print(f"tiny-imagenet-synth: error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {target} in {time.monotonic() - started:.1f} s")
    if zip_path is not None:
        print(f"wrote {zip_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
