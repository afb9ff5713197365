"""The benchmarks' data: a synthetic Tiny ImageNet generated once into the work dir and reused.

Layout of the work dir (default ``/tmp/bench-work``), one folder per synthetic spec::

    <work>/synth-c200-t500-v50-x10000-s0/
      spec.json                        the spec; the folder is reused only if it matches
      source/tiny-imagenet-200/        the generated tree, exactly as the archive ships it
      tiny-imagenet-200.zip            that tree packed (what a prepare job extracts)
      fractions/f0.10.zip ...          the first 10 % ... of every split (same images), packed
      prepared/                        a data root where the project prepared it once:
        raw/extracted/bench/tiny-imagenet-200/   the extracted, reorganized tree
        datasets/bench/                          the shards and metadata
      runs/                            scratch data roots of measured runs (deleted after each)
      logs/                            logs of the child processes

``scale`` shrinks every split (1.0: 100,000 train, 10,000 val, 10,000 test; 200 classes always).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.common import log, run_child
from dataset_service.layout_names import (
    IMAGES_DIR,
    ROOT_DIR_NAME,
    TEST_DIR,
    TRAIN_DIR,
    VAL_ANNOTATIONS,
    VAL_DIR,
    WNIDS_FILE,
    WORDS_FILE,
    boxes_file_name,
    test_image_name,
    train_image_name,
)
from dataset_service.synthetic import SyntheticSpec, generate, pack_zip
from datavolume import DataRoot

DATASET_NAME = "bench"
FULL = SyntheticSpec()


def spec_for_scale(scale: float) -> SyntheticSpec:
    """The full-size spec (100k/10k/10k, 200 classes) with every split scaled by ``scale``."""
    if not 0 < scale <= 1:
        raise ValueError(f"scale must be in (0, 1], got {scale}")
    return SyntheticSpec(
        classes=FULL.classes,
        train_per_class=max(1, round(FULL.train_per_class * scale)),
        val_per_class=max(1, round(FULL.val_per_class * scale)),
        test_images=max(1, round(FULL.test_images * scale)),
        seed=FULL.seed,
    )


def spec_key(spec: SyntheticSpec) -> str:
    return (
        f"synth-c{spec.classes}-t{spec.train_per_class}-v{spec.val_per_class}"
        f"-x{spec.test_images}-s{spec.seed}"
    )


def describe(spec: SyntheticSpec) -> str:
    return (
        f"synthetic Tiny ImageNet, {spec.classes} classes: {spec.train_total:,} train + "
        f"{spec.val_total:,} val + {spec.test_images:,} test images"
    )


@dataclass(frozen=True)
class WorkData:
    work_dir: Path
    spec: SyntheticSpec

    @property
    def base(self) -> Path:
        return self.work_dir / spec_key(self.spec)

    @property
    def tree(self) -> Path:
        """The pristine generated tree (val images still in ``val/images``)."""
        return self.base / "source" / ROOT_DIR_NAME

    @property
    def zip_path(self) -> Path:
        return self.base / f"{ROOT_DIR_NAME}.zip"

    @property
    def prepared_root(self) -> Path:
        return self.base / "prepared"

    @property
    def dataset_dir(self) -> Path:
        return DataRoot(self.prepared_root).dataset(DATASET_NAME)

    @property
    def train_dir(self) -> Path:
        """One folder per class: what ``flow_from_directory``-style readers take (train is
        one folder per class as shipped)."""
        return self.tree / TRAIN_DIR

    @property
    def runs_dir(self) -> Path:
        return self.base / "runs"

    @property
    def logs_dir(self) -> Path:
        return self.base / "logs"

    def fraction_zip(self, fraction: float) -> Path:
        if fraction >= 1:
            return self.zip_path
        return self.base / "fractions" / f"f{fraction:.2f}.zip"

    def fraction_counts(self, fraction: float) -> dict[str, int]:
        s = self.spec
        per_class = max(1, round(s.train_per_class * fraction))
        return {
            "train": per_class * s.classes,
            "val": max(1, round(s.val_total * fraction)),
            "test": max(1, round(s.test_images * fraction)),
        }


# --------------------------------------------------------------------------- building


def _spec_file(data: WorkData) -> Path:
    return data.base / "spec.json"


def ensure_source(work_dir: Path, spec: SyntheticSpec) -> WorkData:
    """Generate and pack the tree for ``spec`` unless the work dir already holds it."""
    data = WorkData(Path(work_dir), spec)
    want = asdict(spec)
    spec_file = _spec_file(data)
    if (
        spec_file.is_file()
        and json.loads(spec_file.read_text()) == want
        and data.zip_path.is_file()
    ):
        log(f"reusing {data.base}")
        return data
    if data.base.exists():
        shutil.rmtree(data.base)
    data.base.mkdir(parents=True)
    log(f"generating {describe(spec)} into {data.tree.parent}")
    generate(data.tree.parent, spec)
    log(f"packing {data.zip_path.name}")
    pack_zip(data.tree, data.zip_path)
    spec_file.write_text(json.dumps(want, indent=2))
    return data


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def ensure_fraction_zip(data: WorkData, fraction: float) -> Path:
    """The archive of the first ``fraction`` of every split of the tree (the same images).

    Train keeps the first images of every class (and their box lines), val the first
    annotation lines (the val order is a random mix of classes), test the first images.
    """
    target = data.fraction_zip(fraction)
    if target.is_file():
        return target
    counts = data.fraction_counts(fraction)
    per_class = counts["train"] // data.spec.classes
    src = data.tree
    staging = target.parent / f".{target.stem}-tree" / ROOT_DIR_NAME
    if staging.parent.exists():
        shutil.rmtree(staging.parent)
    staging.mkdir(parents=True)
    try:
        for name in (WNIDS_FILE, WORDS_FILE):
            _link(src / name, staging / name)
        wnids = (src / WNIDS_FILE).read_text().split()
        for wnid in wnids:
            images = staging / TRAIN_DIR / wnid / IMAGES_DIR
            images.mkdir(parents=True)
            for i in range(per_class):
                name = train_image_name(wnid, i)
                _link(src / TRAIN_DIR / wnid / IMAGES_DIR / name, images / name)
            boxes = (src / TRAIN_DIR / wnid / boxes_file_name(wnid)).read_text().splitlines(True)
            (staging / TRAIN_DIR / wnid / boxes_file_name(wnid)).write_text(
                "".join(boxes[:per_class]), newline=""
            )
        lines = (src / VAL_DIR / VAL_ANNOTATIONS).read_text().splitlines(True)[: counts["val"]]
        (staging / VAL_DIR / IMAGES_DIR).mkdir(parents=True)
        (staging / VAL_DIR / VAL_ANNOTATIONS).write_text("".join(lines), newline="")
        for line in lines:
            name = line.split("\t", 1)[0]
            _link(src / VAL_DIR / IMAGES_DIR / name, staging / VAL_DIR / IMAGES_DIR / name)
        (staging / TEST_DIR / IMAGES_DIR).mkdir(parents=True)
        for i in range(counts["test"]):
            name = test_image_name(i)
            _link(src / TEST_DIR / IMAGES_DIR / name, staging / TEST_DIR / IMAGES_DIR / name)
        pack_zip(staging, target)
    finally:
        shutil.rmtree(staging.parent, ignore_errors=True)
    return target


def ensure_prepared(data: WorkData) -> WorkData:
    """Prepare the dataset once with the project's own pipeline (not measured)."""
    marker = data.prepared_root / ".bench-prepared.json"
    want = asdict(data.spec)
    if (
        marker.is_file()
        and json.loads(marker.read_text()) == want
        and (data.dataset_dir / "shard_format.json").is_file()
    ):
        return data
    if data.prepared_root.exists():
        shutil.rmtree(data.prepared_root)
    log(f"preparing the dataset with the project's pipeline into {data.prepared_root}")
    run_child(
        "bench.sharding:child_prepare",
        {"data_root": str(data.prepared_root), "zip_path": str(data.zip_path)},
        log_path=data.logs_dir / "prepare-once.log",
    )
    marker.write_text(json.dumps(want))
    return data


def scratch_root(data: WorkData, label: str) -> Path:
    """A fresh, empty data root for one measured run."""
    root = data.runs_dir / label
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    return root


def run_script(module: str, doc: str | None, add_arguments, run, section: str, argv=None) -> int:
    """The ``main`` of one benchmark script: parse its options, make sure the synthetic source
    exists, run it and rewrite its section of the output file."""
    from bench.common import RunInfo, command_line, common_parser, replace_section

    p = common_parser(doc)
    add_arguments(p)
    args = p.parse_args(argv)
    data = ensure_source(args.work_dir, spec_for_scale(args.scale))
    info = RunInfo.now(command_line(module, argv), args.repeats)
    replace_section(args.output, section, run(data, args, info))
    log(f"wrote the {section} section of {args.output}")
    return 0
