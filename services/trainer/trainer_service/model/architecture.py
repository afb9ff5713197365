"""The model's architecture in numbers: shape, bounds, exact size and cost, all without Keras.

The API process validates run configs and answers the model report with this module alone, so
it never imports Keras (whose TensorFlow backend would claim a GPU's memory beside a training
worker). The counts are closed-form sums over the blocks of ``trainer_service.model.resnet``
and equal Keras's own (``tests/trainer/model/test_architecture.py`` checks both):

- a pre-activation unit BN(c_in) -> Conv k x k (c_in -> c_out, no bias): ``4 c_in`` BatchNorm
  numbers (2 trainable, 2 moving statistics) and ``k^2 c_in c_out`` weights; its multiply-adds
  are the weights times the output's height x width;
- Bottleneck(f): units 1x1 f->f/4, 3x3 f/4->f/4, 1x1 f/4->f; SpecialBottleneck(f) the same from
  the tail conv plus a plain 1x1 f->f shortcut; Downsample(f): 1x1 f->f/2 (stride 2), 3x3,
  1x1 f/2->2f, and a 1x1 f->2f (stride 2) shortcut unit; the head BN(C) and Dense(C -> classes).

Bounds (:func:`check_shape`), derived from the largest GPU the trainer targets (an H200, 141 GB)
and from what keeps a config quick to check and a checkpoint small: at most ``MAX_PARAMETERS``
(100 M: float32 weights, gradients and momentum take 1.2 GB, a checkpoint 0.4-0.8 GB), width at
most ``MAX_WIDTH``, ``MAX_LEVELS`` levels (64 px halve to 1 px after 6), ``MAX_REPEATS`` per
level and ``MAX_BLOCKS`` in all. Activation memory grows with the batch, so a batch that does
not fit still fails the run, with the reason ``out_of_memory``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

#: Width presets: the number of filters of the tail conv and the first level.
WIDTHS: dict[str, int] = {"full": 64, "half": 32}
DEFAULT_LEVELS: tuple[int, ...] = (4, 6, 3, 2)
DEFAULT_CLASSES = 200
INPUT_SHAPE: tuple[int, int, int] = (64, 64, 3)

MAX_WIDTH = 512
MAX_LEVELS = 6
MAX_REPEATS = 32
MAX_BLOCKS = 64
MAX_PARAMETERS = 100_000_000
MAX_CLASSES = 100_000


def check_positive_int(name: str, value, multiple: int = 1) -> int:
    """Return ``value`` as an int, or raise ValueError naming it and the received value."""
    ok = (
        isinstance(value, numbers.Integral)
        and not isinstance(value, bool)
        and value >= 1
        and value % multiple == 0
    )
    if not ok:
        what = "a positive int" if multiple == 1 else f"a positive multiple of {multiple}"
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return int(value)


def resolve_width(width: str | int) -> int:
    """A preset name (``"full"``, ``"half"``), an int, or a decimal string -> the int width."""
    if isinstance(width, str):
        key = width.strip().lower()
        if key in WIDTHS:
            return WIDTHS[key]
        if not key.isdigit():
            raise ValueError(
                f"width must be one of {sorted(WIDTHS)} or a positive multiple of 4, got {width!r}"
            )
        width = int(key)
    filters = check_positive_int("filters", width, multiple=4)
    if filters > MAX_WIDTH:
        raise ValueError(f"width must be at most {MAX_WIDTH}, got {filters}")
    return filters


def check_levels(levels) -> tuple[int, ...]:
    """1..MAX_LEVELS ints in 0..MAX_REPEATS (Bottleneck repeats per level) -> a tuple."""
    ok = isinstance(levels, Sequence) and not isinstance(levels, str | bytes) and len(levels) > 0
    ok = ok and all(
        isinstance(r, numbers.Integral) and not isinstance(r, bool) and r >= 0 for r in levels
    )
    if not ok:
        raise ValueError(f"levels must be a non-empty list of non-negative ints, got {levels!r}")
    levels = tuple(int(r) for r in levels)
    if len(levels) > MAX_LEVELS:
        raise ValueError(f"at most {MAX_LEVELS} levels, got {len(levels)}: {list(levels)}")
    if max(levels) > MAX_REPEATS or sum(levels) > MAX_BLOCKS:
        raise ValueError(
            f"at most {MAX_REPEATS} bottlenecks per level and {MAX_BLOCKS} in all, "
            f"got {list(levels)}"
        )
    return levels


def parse_levels(text: str) -> tuple[int, ...]:
    """``"4,6,3,2"`` -> ``(4, 6, 3, 2)``; raises ValueError repeating the text otherwise."""
    try:
        levels = [int(part) for part in text.split(",")]
    except (AttributeError, ValueError):
        levels = []
    if not levels or min(levels) < 0:
        raise ValueError(f"levels must be comma-separated non-negative ints, got {text!r}")
    return check_levels(levels)  # the bounds


@dataclass(frozen=True)
class Size:
    trainable_params: int
    non_trainable_params: int
    macs_per_image: int

    @property
    def total_params(self) -> int:
        return self.trainable_params + self.non_trainable_params


def size(
    filters: int,
    levels: Sequence[int],
    classes: int = DEFAULT_CLASSES,
    input_shape: tuple[int, int, int] = INPUT_SHAPE,
) -> Size:
    """Parameters and conv + dense multiply-adds per image, exactly as Keras counts them."""
    height, width_px, channels = input_shape
    trainable = non_trainable = macs = 0

    def unit(c_in: int, c_out: int, k: int, pixels: int, bn: bool = True) -> None:
        nonlocal trainable, non_trainable, macs
        if bn:
            trainable += 2 * c_in
            non_trainable += 2 * c_in
        weights = k * k * c_in * c_out
        trainable += weights
        macs += weights * pixels

    def halve(n: int) -> int:
        return math.ceil(n / 2)

    pixels = height * width_px
    unit(channels, filters, 3, pixels, bn=False)  # tail conv
    q = filters // 4
    for c_in, c_out, k in ((filters, q, 1), (q, q, 3), (q, filters, 1)):  # SpecialBottleneck
        unit(c_in, c_out, k, pixels)
    unit(filters, filters, 1, pixels, bn=False)  # its plain shortcut conv
    f, h, w = filters, height, width_px
    for repeats in levels:
        q = f // 4
        for _ in range(repeats):
            for c_in, c_out, k in ((f, q, 1), (q, q, 3), (q, f, 1)):
                unit(c_in, c_out, k, h * w)
        h, w = halve(h), halve(w)
        half = f // 2
        for c_in, c_out, k in ((f, half, 1), (half, half, 3), (half, 2 * f, 1), (f, 2 * f, 1)):
            unit(c_in, c_out, k, h * w)
        f *= 2
    trainable += 2 * f  # final BatchNorm
    non_trainable += 2 * f
    trainable += f * classes + classes  # Dense logits
    macs += f * classes
    return Size(trainable, non_trainable, macs)


def check_shape(filters: int, levels: Sequence[int], classes: int = DEFAULT_CLASSES) -> Size:
    """The model's size, or ValueError if it is over :data:`MAX_PARAMETERS`."""
    found = size(filters, levels, classes)
    if found.total_params > MAX_PARAMETERS:
        raise ValueError(
            f"width {filters} with levels {list(levels)} has {found.total_params:,} parameters; "
            f"at most {MAX_PARAMETERS:,} are allowed (use a smaller width or fewer levels)"
        )
    return found


def report(filters: int, levels: Sequence[int], classes: int = DEFAULT_CLASSES) -> dict:
    """The model report (``GET /v1/model-report``, ``resnet-report``): shape, parameters and
    multiply-adds (no Keras involved)."""
    classes = check_positive_int("classes", classes)
    found = check_shape(filters, levels, classes)
    return {
        "filters": filters,
        "levels": list(levels),
        "classes": classes,
        "input_shape": list(INPUT_SHAPE),
        "trainable_params": found.trainable_params,
        "non_trainable_params": found.non_trainable_params,
        "total_params": found.total_params,
        "macs_per_image": found.macs_per_image,
        "gmacs_per_image": found.macs_per_image / 1e9,
        "gflops_per_image_forward": 2 * found.macs_per_image / 1e9,
    }


def format_report(found: dict) -> str:
    """:func:`report` as a small text table."""
    rows = [
        ("width (filters)", str(found["filters"])),
        ("levels", ",".join(str(r) for r in found["levels"])),
        ("classes", str(found["classes"])),
        ("input", "x".join(str(d) for d in found["input_shape"])),
        ("trainable params", f"{found['trainable_params']:,}"),
        ("non-trainable params", f"{found['non_trainable_params']:,}"),
        ("total params", f"{found['total_params']:,}"),
        ("MACs / image", f"{found['gmacs_per_image']:.4f} G"),
        ("GFLOPs / image (forward)", f"{found['gflops_per_image_forward']:.4f}"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def main(argv: Sequence[str] | None = None) -> int:
    """``resnet-report --width full|half|N --levels 4,6,3,2 [--classes N] [--json]``: the same
    report as ``GET /v1/model-report``, without Keras."""
    import argparse
    import json

    parser = argparse.ArgumentParser(
        prog="resnet-report",
        description="Parameters and multiply-adds of the bottleneck ResNet (closed form).",
    )
    parser.add_argument(
        "--width", default="full", help="full (64), half (32) or a positive multiple of 4"
    )
    parser.add_argument(
        "--levels",
        default=",".join(str(r) for r in DEFAULT_LEVELS),
        help="Bottleneck repeats per level, comma-separated (default: %(default)s)",
    )
    parser.add_argument("--classes", type=int, default=DEFAULT_CLASSES)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    try:
        found = report(resolve_width(args.width), parse_levels(args.levels), args.classes)
    except ValueError as exc:
        parser.error(str(exc))
    print(json.dumps(found, indent=2) if args.json else format_report(found))
    return 0
