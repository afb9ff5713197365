"""Synthetic image sets where augmentation decides the outcome, in the tiny-imagenet-200 layout.

Each class is a shape (its outline is all that tells the classes apart: every image draws its own
colours, background and noise), drawn on a 64x64 image and written as a JPEG in the archive's exact
layout (``wnids.txt``, ``words.txt``, ``train/<wnid>/images``, ``val/val_annotations.txt``, ...),
so the project's own ``prepare`` turns it into shards like the real archive.

- ``shift``: in the small train split every object sits at the centre, at one size; in val it sits
  anywhere and at sizes from 0.7x to 1.3x. What generalizes from centred objects to objects
  anywhere is what random crops teach: this set rewards crop and translation augmentation (as
  real photographs do, where objects are seldom centred), and a model trained without it
  memorizes where the centred training objects are.
- ``mirror``: half the classes are mirror images of the other half (an "L" and a "J"), centred
  in both splits. A random left-right flip turns a training image into one of the other class:
  with it the mirror pairs cannot be told apart; without it they can. This set rewards turning the
  flip off where left and right differ.

Everything depends only on the arguments: the same spec gives the same files.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from dataset_service.layout_names import (
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

#: Shapes as polygons in a unit box (x right, y down), each asymmetric left-right: a mirror set
#: flips them; the shift set uses them as they are.
# fmt: off
SHAPES: dict[str, list[tuple[float, float]]] = {
    "ell": [(0.2, 0.05), (0.45, 0.05), (0.45, 0.7), (0.85, 0.7), (0.85, 0.95), (0.2, 0.95)],
    "flag": [(0.2, 0.05), (0.85, 0.2), (0.4, 0.4), (0.4, 0.95), (0.2, 0.95)],
    "wedge": [(0.1, 0.9), (0.9, 0.9), (0.1, 0.1)],
    "hook": [
        (0.55, 0.05),
        (0.8, 0.05),
        (0.8, 0.95),
        (0.15, 0.95),
        (0.15, 0.6),
        (0.4, 0.6),
        (0.4, 0.75),
        (0.55, 0.75),
    ],
    "step": [
        (0.1, 0.95),
        (0.1, 0.6),
        (0.4, 0.6),
        (0.4, 0.3),
        (0.7, 0.3),
        (0.7, 0.05),
        (0.95, 0.05),
        (0.95, 0.95),
    ],
    "arrow": [
        (0.05, 0.4),
        (0.6, 0.4),
        (0.6, 0.15),
        (0.95, 0.5),
        (0.6, 0.85),
        (0.6, 0.6),
        (0.05, 0.6),
    ],
    "kite": [(0.5, 0.05), (0.9, 0.35), (0.5, 0.95), (0.3, 0.35)],
    "boot": [(0.3, 0.05), (0.55, 0.05), (0.55, 0.65), (0.95, 0.75), (0.95, 0.95), (0.3, 0.95)],
    "comb": [
        (0.1, 0.1),
        (0.9, 0.1),
        (0.9, 0.3),
        (0.75, 0.3),
        (0.75, 0.9),
        (0.6, 0.9),
        (0.6, 0.3),
        (0.45, 0.3),
        (0.45, 0.9),
        (0.3, 0.9),
        (0.3, 0.3),
        (0.1, 0.3),
    ],
    "sail": [
        (0.45, 0.05),
        (0.45, 0.8),
        (0.9, 0.8),
        (0.1, 0.95),
        (0.1, 0.8),
        (0.3, 0.8),
        (0.3, 0.3),
    ],
}
# fmt: on
VARIANTS = ("shift", "mirror")
#: Bumped whenever the drawing changes: sets made before are not reused.
RENDER_VERSION = 2


@dataclass(frozen=True)
class RecipeDataSpec:
    """What to draw. ``classes`` must be even for ``mirror`` (pairs of shapes)."""

    variant: str = "shift"
    classes: int = 10
    train_per_class: int = 40
    val_per_class: int = 30
    test_images: int = 20
    object_size: int = 26
    #: shift: how far (pixels, each way) and by how much (scale range) val objects move
    val_shift: int = 6
    val_scale: tuple[float, float] = (0.85, 1.15)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        limit = len(SHAPES) * (2 if self.variant == "mirror" else 1)
        if not 2 <= self.classes <= limit or (self.variant == "mirror" and self.classes % 2):
            raise ValueError(f"{self.variant}: classes must be in 2..{limit} (even for mirror)")

    @property
    def name(self) -> str:
        """A folder name unique to the spec (and to the drawing code's version)."""
        key = json.dumps([RENDER_VERSION, asdict(self)], sort_keys=True)
        return f"recipe-{self.variant}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def class_shapes(spec: RecipeDataSpec) -> list[tuple[str, list[tuple[float, float]]]]:
    """(name, polygon) per class, in class order."""
    names = list(SHAPES)
    if spec.variant == "shift":
        return [(n, SHAPES[n]) for n in names[: spec.classes]]
    out = []
    for n in names[: spec.classes // 2]:
        out.append((n, SHAPES[n]))
        out.append((f"{n}-mirrored", [(1.0 - x, y) for x, y in SHAPES[n]]))
    return out


def _placement(spec: RecipeDataSpec, split: str, rng: np.random.Generator):
    """(size, x0, y0) of the object's box."""
    if spec.variant == "shift" and split != "train":
        size = round(spec.object_size * rng.uniform(*spec.val_scale))
        centre = (IMAGE_SIZE - size) // 2
        x0, y0 = centre + rng.integers(-spec.val_shift, spec.val_shift + 1, size=2)
        return size, int(x0), int(y0)
    size = spec.object_size
    jitter = 2 if spec.variant == "mirror" else 0
    x0, y0 = (IMAGE_SIZE - size) // 2 + rng.integers(-jitter, jitter + 1, size=2)
    return size, int(x0), int(y0)


def render(polygon, size: int, x0: int, y0: int, rng: np.random.Generator) -> Image.Image:
    """One image: a smooth random background, the shape in a random colour that stands out from
    it (at least 90 levels lighter or darker, with its own hue), noise."""
    base = rng.uniform(40, 215, size=3)
    grad = rng.uniform(-30, 30, size=(2, 3))
    ramp = np.linspace(-1, 1, IMAGE_SIZE)
    background = base + ramp[None, :, None] * grad[0] + ramp[:, None, None] * grad[1]
    image = Image.fromarray(np.clip(background, 0, 255).astype(np.uint8))
    sign = -1.0 if base.mean() > 128 else 1.0
    colour = base + sign * rng.uniform(90, 130) + rng.uniform(-30, 30, size=3)
    fill = tuple(int(c) for c in np.clip(colour, 0, 255))
    points = [(x0 + x * size, y0 + y * size) for x, y in polygon]
    ImageDraw.Draw(image).polygon(points, fill=fill)
    pixels = np.asarray(image, dtype=np.float32) + rng.normal(0, 6, (IMAGE_SIZE, IMAGE_SIZE, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90)
    return out.getvalue()


def write_tree(root: Path, spec: RecipeDataSpec) -> Path:
    """Write ``root/tiny-imagenet-200/`` for ``spec``; returns that folder."""
    out = Path(root) / ROOT_DIR_NAME
    rng = np.random.default_rng(spec.seed)
    shapes = class_shapes(spec)
    wnids = [f"n{90_000_000 + i:08d}" for i in range(len(shapes))]
    out.mkdir(parents=True)
    (out / WNIDS_FILE).write_text("".join(f"{w}\n" for w in wnids))
    (out / WORDS_FILE).write_text(
        "".join(f"{w}\t{name}\n" for w, (name, _) in zip(wnids, shapes, strict=True))
    )
    for wnid, (_, polygon) in zip(wnids, shapes, strict=True):
        folder = out / TRAIN_DIR / wnid / IMAGES_DIR
        folder.mkdir(parents=True)
        boxes = []
        for i in range(spec.train_per_class):
            size, x0, y0 = _placement(spec, "train", rng)
            name = train_image_name(wnid, i)
            (folder / name).write_bytes(_jpeg(render(polygon, size, x0, y0, rng)))
            boxes.append(box_line(name, (x0, y0, x0 + size, y0 + size)))
        (out / TRAIN_DIR / wnid / boxes_file_name(wnid)).write_text("".join(boxes))
    val = out / VAL_DIR / IMAGES_DIR
    val.mkdir(parents=True)
    labels = rng.permutation(np.repeat(np.arange(len(shapes)), spec.val_per_class))
    annotations = []
    for i, label in enumerate(labels):
        size, x0, y0 = _placement(spec, "val", rng)
        name = val_image_name(i)
        (val / name).write_bytes(_jpeg(render(shapes[label][1], size, x0, y0, rng)))
        annotations.append(val_annotation_line(name, wnids[label], (x0, y0, x0 + size, y0 + size)))
    (out / VAL_DIR / VAL_ANNOTATIONS).write_text("".join(annotations))
    test = out / TEST_DIR / IMAGES_DIR
    test.mkdir(parents=True)
    for i in range(spec.test_images):
        label = int(rng.integers(len(shapes)))
        size, x0, y0 = _placement(spec, "val", rng)
        (test / test_image_name(i)).write_bytes(_jpeg(render(shapes[label][1], size, x0, y0, rng)))
    return out


def chance(spec: RecipeDataSpec) -> float:
    return 1.0 / spec.classes
