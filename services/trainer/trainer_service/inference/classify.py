"""``python -m trainer_service.inference.classify``: the top classes of images, from a run, in
this process, without the service (``tin predict --local`` runs it).

    python -m trainer_service.inference.classify --run-dir /data/runs/<id> cat.jpg dog.png
    python -m trainer_service.inference.classify --data-root /data --run <id> --json photos/*

The same code as ``POST /v1/runs/{id}/predict`` (:class:`~.predictor.Predictor`: ONNX Runtime on
the checkpoint's export, no Keras in this process), called here directly: each image is read by
:mod:`.images` (any format and size Pillow reads), classified by the run's ``best`` checkpoint
(or ``--checkpoint``: latest, final, N, epoch-000N.keras) the way the run scored its val images
(its moving-average weights with ``use_ema``, flip-averaged logits with ``tta_flip``), and
answered with its top classes: index, wnid, the words of ``words.txt`` and the softmax
probability. A file that is not an image gets an error naming it; the others are still
classified. The classes are the run's own (``dataset.json``: the version it trained on). The
first use of a checkpoint exports it (``serving/`` in the run folder: Keras on TensorFlow in a
process of its own, some seconds); later uses, here or by the service, load that export.

Exit status: 0 when every image was classified, 1 when some were not, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from datavolume.datasets import DatasetUnavailable
from datavolume.files import read_json
from datavolume.layout import DataRoot
from datavolume.runs import RunFolder
from trainer_service.inference.models import EXPORT_TIMEOUT_S, ModelUnavailable
from trainer_service.inference.predictor import DEFAULT_TOP, Predictor, PredictorOptions
from trainer_service.runs.checkpoints import NoSuchCheckpoint


def read_files(paths: list[Path]) -> tuple[list[tuple[str, bytes]], dict[int, str]]:
    """(name, bytes) per path ("-" is standard input, named "stdin"), and the errors of those
    that could not be read (by position; their bytes are empty)."""
    uploads, errors = [], {}
    for i, path in enumerate(paths):
        if str(path) == "-":
            uploads.append(("stdin", sys.stdin.buffer.read()))
            continue
        try:
            uploads.append((path.name, path.read_bytes()))
        except OSError as exc:
            uploads.append((path.name, b""))
            errors[i] = exc.strerror or str(exc)
    return uploads, errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trainer_service.inference.classify",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("images", nargs="+", type=Path, help="image files (- for stdin)")
    parser.add_argument("--run-dir", type=Path, help="the run folder (<data root>/runs/<id>)")
    parser.add_argument("--data-root", type=Path, help="with --run: the data root")
    parser.add_argument("--run", help="with --data-root: the run id")
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
    if args.run_dir is not None:
        run = RunFolder(args.run_dir.resolve())
        root = DataRoot(run.root.parent.parent)  # a run folder is <data root>/runs/<id>
    elif args.data_root is not None and args.run:
        root = DataRoot(args.data_root)
        run = root.run(args.run)
    else:
        parser.error("give --run-dir, or --data-root and --run")
    if read_json(run.config, tolerate_corrupt=True) is None:
        where = args.run_dir or f"{args.run!r} under {args.data_root}"
        parser.error(f"no run {where}" if args.run_dir is None else f"{where} is not a run folder")

    if args.nice > 0:
        os.nice(args.nice)
    threads = args.threads or len(os.sched_getaffinity(0))
    predictor = Predictor(root, PredictorOptions(threads=threads, timeout_s=EXPORT_TIMEOUT_S))
    uploads, unreadable = read_files(args.images)
    try:
        result = predictor.classify(run, args.checkpoint, uploads, args.top)
    except NoSuchCheckpoint as exc:
        parser.error(str(exc))
    except DatasetUnavailable as exc:
        parser.error(exc.message)
    except ModelUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    answers = result["items"]
    for i, reason in unreadable.items():
        answers[i] = {"image": answers[i]["image"], "error": reason}
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
