"""``python -m trainer_service.inference.classify``: the top classes of images, from a run.

    python -m trainer_service.inference.classify --data-root /data --run <id> cat.jpg dog.png
    python -m trainer_service.inference.classify --data-root /data --run <id> --json photos/*

Each image is read by :mod:`.images` (any format and size Pillow reads), classified by the run's
``best`` checkpoint (or ``--checkpoint``: latest, final, N, epoch-000N.keras) the way the run
scored its val images (its moving-average weights with ``use_ema``, flip-averaged logits with
``tta_flip``), and answered with its top classes: index, wnid, the words of ``words.txt`` and the
softmax probability. A file that is not an image gets an error naming it; the others are still
classified. The classes are the run's own (``dataset.json``: the version it trained on).

Exit status: 0 when every image was classified, 1 when some were not, 2 for a usage error. The
``POST /v1/runs/{id}/predict`` endpoint runs this module (``--json``) in a process of its own.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from datavolume.datasets import DatasetUnavailable
from datavolume.files import read_json
from datavolume.layout import DataRoot
from trainer_service import TENSORFLOW_ENV
from trainer_service.inference.images import ImageError, load_image
from trainer_service.runs.checkpoints import resolve_model
from trainer_service.runs.dataset import read_dataset_record

DEFAULT_TOP = 5
BATCH = 64


def top_classes(logits: np.ndarray, classes: list[dict[str, Any]], k: int) -> list[list[dict]]:
    """For each row of ``logits``: the ``k`` most probable classes, most probable first."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    probabilities = np.exp(shifted) / np.exp(shifted).sum(axis=-1, keepdims=True)
    k = min(k, logits.shape[-1])
    answers = []
    for row in probabilities:
        order = np.argsort(-row, kind="stable")[:k]
        answers.append(
            [
                {
                    "index": int(i),
                    "wnid": classes[i]["wnid"],
                    "words": classes[i]["words"],
                    "probability": round(float(row[i]), 6),
                }
                for i in order
            ]
        )
    return answers


def classify_files(
    model, paths: list[Path], classes: list[dict[str, Any]], k: int = DEFAULT_TOP
) -> list[dict[str, Any]]:
    """One answer per path, in order: ``{"image", "top": [...]}`` or ``{"image", "error"}``."""
    answers: list[dict[str, Any]] = [{"image": path.name} for path in paths]
    arrays, placed = [], []
    for i, path in enumerate(paths):
        try:
            arrays.append(load_image(path.read_bytes()))
            placed.append(i)
        except (ImageError, OSError) as exc:
            answers[i]["error"] = str(exc) if isinstance(exc, ImageError) else exc.strerror
    if arrays:
        logits = model.predict(np.stack(arrays), batch_size=BATCH, verbose=0)
        for i, top in zip(placed, top_classes(logits, classes, k), strict=True):
            answers[i]["top"] = top
    return answers


def limit_threads(threads: int) -> None:
    """Before Keras is imported: run TensorFlow's and XLA's CPU work on ``threads`` threads."""
    os.environ["TF_NUM_INTRAOP_THREADS"] = str(threads)
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"
    eigen = "true" if threads > 1 else "false"
    flags = f"--xla_cpu_multi_thread_eigen={eigen} intra_op_parallelism_threads={threads}"
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flags}".strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trainer_service.inference.classify",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("images", nargs="+", type=Path, help="image files")
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--run", required=True, help="run id")
    parser.add_argument(
        "--checkpoint", default="best", help="best (default), latest, final, N or epoch-000N.keras"
    )
    parser.add_argument("--top", type=int, default=DEFAULT_TOP, help="classes per image")
    parser.add_argument("--json", action="store_true", help="print the answer as JSON")
    parser.add_argument("--threads", type=int, help="CPU threads for the model (default: all)")
    parser.add_argument("--nice", type=int, default=0, help="lower this process's priority")
    args = parser.parse_args(argv)
    if args.top < 1:
        parser.error("--top must be at least 1")

    root = DataRoot(args.data_root)
    run = root.run(args.run)
    config = read_json(run.config, tolerate_corrupt=True)
    if config is None:
        parser.error(f"no run {args.run!r} under {args.data_root}")
    try:
        path = resolve_model(run, args.checkpoint)
        classes = read_dataset_record(run, root)["classes"]
    except FileNotFoundError as exc:
        parser.error(str(exc))
    except DatasetUnavailable as exc:
        parser.error(exc.message)

    if args.nice > 0:
        os.nice(args.nice)
    if args.threads:
        limit_threads(args.threads)
    for name, value in TENSORFLOW_ENV.items():  # before TensorFlow is first imported
        os.environ.setdefault(name, value)
    from trainer_service.model.saved import load_for_inference  # Keras

    tta_flip = bool(config.get("tta_flip"))
    model = load_for_inference(path, use_ema=bool(config.get("use_ema")), tta_flip=tta_flip)
    answers = classify_files(model, args.images, classes, args.top)
    result = {
        "run": args.run,
        "checkpoint": path.name,
        "tta_flip": tta_flip,
        "items": answers,
    }
    if args.json:
        print(json.dumps(result))
    else:
        for answer in answers:
            print(answer["image"])
            if "error" in answer:
                print(f"  error: {answer['error']}")
            for top in answer.get("top", []):
                print(f"  {top['probability']:7.2%}  {top['wnid']}  {top['words']}")
    return 1 if any("error" in a for a in answers) else 0


if __name__ == "__main__":
    sys.exit(main())
