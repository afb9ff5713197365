"""The loss and metrics a model is trained and scored with; the evaluation of a checkpoint: its
val top-1/top-5 and its test-set predictions in the cs231n format.

``predictions.txt`` has one line per test image, ``test_<i>.JPEG <wnid>``, ordered by ``i``.
``evaluation.json`` holds the val loss, top-1 and top-5 accuracy of the same checkpoint, and
under ``classes`` its top-1 per class, its 20 worst classes and the 10 confusions it makes most
(with ``confusion.csv`` and ``per_class.png`` beside it).

Training calls :func:`evaluate_checkpoint` with the best checkpoint at its end; the command does
the same for any checkpoint::

    python -m trainer_service.engine.evaluate --data-root /data --run <run_id> [--checkpoint best]
    python -m trainer_service.engine.evaluate --data-root /data \\
        --checkpoint-path runs/x/model.keras --dataset tiny-imagenet-200 --out /data/evaluations

It writes ``predictions.txt`` and ``evaluation.json`` into the run folder (or ``--out``) and
prints the evaluation.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from datavolume.datasets import DatasetUnavailable, open_dataset
from datavolume.files import atomic_write_json, atomic_write_text
from datavolume.layout import DataRoot
from datavolume.runs import RunFolder
from shard_format.metadata import DatasetMetadata
from trainer_service import TENSORFLOW_ENV
from trainer_service.engine.data import test_images, val_pipeline
from trainer_service.runs import per_class
from trainer_service.runs.checkpoints import resolve
from trainer_service.runs.config import Evaluation

EVALUATION_BATCH = 256
_TEST_INDEX = re.compile(r"(\d+)")


def loss():
    """Sparse categorical cross-entropy on the logits."""
    import keras

    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def metrics() -> list:
    """Top-1 and top-5 accuracy, named so Keras logs ``accuracy``/``top5_accuracy``."""
    import keras

    return [
        keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
        keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5_accuracy"),
    ]


def _sort_key(file_name: str) -> tuple[int, str]:
    found = _TEST_INDEX.findall(file_name)
    return (int(found[-1]) if found else -1, file_name)


def predict_lines(model, data_dir: Path, metadata: DatasetMetadata, batch_size: int) -> list[str]:
    """``"<file_name> <wnid>"`` for every test image, sorted by the image's number."""
    wnids = metadata.wnids()
    batches = test_images(data_dir, metadata, batch_size)  # a fixed order: read it twice
    names = [n.decode() for b in batches.map(lambda x, n: n).as_numpy_iterator() for n in b]
    # model.predict (not a loop of predict_on_batch) splits batches right under a strategy
    logits = model.predict(batches.map(lambda x, n: x), verbose=0)
    labels = logits.argmax(axis=-1)
    pairs = sorted(zip(names, labels, strict=True), key=lambda p: _sort_key(p[0]))
    return [f"{name} {wnids[int(label)]}" for name, label in pairs]


def evaluate_val(
    model,
    data_dir: Path,
    metadata: DatasetMetadata,
    batch_size: int,
    limit_steps: int | None = None,
) -> dict[str, float]:
    """Val loss, top-1 and top-5 accuracy of a model compiled with :func:`loss` and
    :func:`metrics`."""
    ds, _, images = val_pipeline(data_dir, metadata, batch_size, limit_steps)
    logs = model.evaluate(ds, verbose=0, return_dict=True)
    return {
        "val_loss": float(logs["loss"]),
        "val_accuracy": float(logs["accuracy"]),
        "val_top5_accuracy": float(logs["top5_accuracy"]),
        "val_images": images,
    }


def val_predictions(
    model, data_dir: Path, metadata: DatasetMetadata, batch_size: int, limit_steps: int | None
) -> tuple[list[int], list[int]]:
    """(labels, predicted classes) of the val images, in the pipeline's fixed order."""
    ds, _, _ = val_pipeline(data_dir, metadata, batch_size, limit_steps)
    labels = [int(y) for batch in ds.map(lambda x, y: y).as_numpy_iterator() for y in batch]
    logits = model.predict(ds.map(lambda x, y: x), verbose=0)
    return labels, [int(i) for i in logits.argmax(axis=-1)]


def class_results(
    model, data_dir: Path, metadata: DatasetMetadata, run: RunFolder, batch_size: int,
    limit_steps: int | None,
) -> dict[str, Any]:  # fmt: skip
    """Per-class top-1 and the most confused classes (:mod:`trainer_service.runs.per_class`);
    writes ``confusion.csv`` and ``per_class.png`` into ``run``."""
    classes = [{"wnid": c.wnid, "words": c.words}
               for c in sorted(metadata.classes, key=lambda c: c.index)]  # fmt: skip
    labels, predicted = val_predictions(model, data_dir, metadata, batch_size, limit_steps)
    matrix = per_class.confusion(labels, predicted, len(classes))
    found = per_class.report(matrix, classes)
    per_class.write_confusion_csv(run.confusion, matrix, classes)
    per_class.plot_worst(run.per_class_png, found["worst"])
    return {**found, "files": [run.confusion.name, run.per_class_png.name]}


def evaluate_checkpoint(
    model,
    data_dir: Path,
    metadata: DatasetMetadata,
    out_dir: Path,
    settings: Evaluation | None = None,
    *,
    checkpoint: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``predictions.txt`` and ``evaluation.json`` into ``out_dir``; returns the latter.

    ``settings``: the run's batch size, test-time flip (both average each image's logits with
    its mirror's) and val step limit; the defaults without a run."""
    settings = settings or Evaluation(EVALUATION_BATCH, tta_flip=False, limit_val_steps=None)
    run = RunFolder(Path(out_dir))
    if settings.tta_flip:
        from trainer_service.model.augment import flip_averaging_model

        model = flip_averaging_model(model)
        model.compile(loss=loss(), metrics=metrics())
    lines = predict_lines(model, data_dir, metadata, settings.batch_size)
    atomic_write_text(run.predictions, "".join(f"{line}\n" for line in lines))
    evaluation = {
        **(checkpoint or {}),
        **evaluate_val(model, data_dir, metadata, settings.batch_size, settings.limit_val_steps),
        "test_predictions": len(lines),
        "predictions_file": run.predictions.name,
        "tta_flip": settings.tta_flip,
        "classes": class_results(
            model, data_dir, metadata, run, settings.batch_size, settings.limit_val_steps
        ),
    }
    atomic_write_json(run.evaluation, evaluation)
    return evaluation


def main(argv: list[str] | None = None) -> int:
    """The command of the module docstring."""
    parser = argparse.ArgumentParser(
        prog="python -m trainer_service.engine.evaluate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--run", help="run id: its dataset, checkpoint and folder are used")
    parser.add_argument(
        "--checkpoint", default="best", help="with --run: best, latest, N or epoch-000N.keras"
    )
    parser.add_argument("--checkpoint-path", type=Path, help="a .keras file (instead of --run)")
    parser.add_argument("--dataset", help="dataset name (default: the run's)")
    parser.add_argument("--out", type=Path, help="output folder (default: the run folder)")
    parser.add_argument("--batch-size", type=int, help=f"default: {EVALUATION_BATCH}")
    args = parser.parse_args(argv)

    root = DataRoot(args.data_root)
    dataset, out = args.dataset, args.out
    if args.run:
        run = root.run(args.run)
        try:
            path = resolve(run, args.checkpoint)
        except FileNotFoundError as exc:
            parser.error(str(exc))
        dataset = dataset or json.loads(run.config.read_text())["dataset"]
        out = out or run.root
    elif args.checkpoint_path:
        path = args.checkpoint_path
        if not path.is_absolute():
            path = root.path / path
        if not dataset or not out:
            parser.error("--checkpoint-path needs --dataset and --out")
    else:
        parser.error("give --run or --checkpoint-path")
    try:
        ready = open_dataset(root, dataset)
    except DatasetUnavailable as exc:
        parser.error(exc.message)

    for name, value in TENSORFLOW_ENV.items():  # before TensorFlow is first imported
        os.environ.setdefault(name, value)
    from trainer_service.model.saved import load_model

    model = load_model(path, compile=False)
    model.compile(optimizer="sgd", loss=loss(), metrics=metrics())  # evaluate needs no more
    Path(out).mkdir(parents=True, exist_ok=True)
    settings = Evaluation(args.batch_size or EVALUATION_BATCH, tta_flip=False,
                          limit_val_steps=None)  # fmt: skip
    result = evaluate_checkpoint(
        model, ready.folder, ready.metadata, out, settings, checkpoint={"checkpoint": str(path)}
    )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
