"""The loss and metrics a model is trained and scored with; test-set predictions in the cs231n
format and the val top-1/top-5 of a chosen checkpoint.

``predictions.txt`` has one line per test image, ``test_<i>.JPEG <wnid>``, ordered by ``i``.
``evaluation.json`` holds the val loss, top-1 and top-5 accuracy of the same checkpoint.

Training calls :func:`predict_and_evaluate` with the best checkpoint at its end; the CLI does the
same for any checkpoint::

    python -m trainer_service.predict --data-root /data --run <run_id> [--checkpoint best]
    python -m trainer_service.predict --data-root /data --checkpoint-path runs/x/model.keras \\
        --dataset tiny-imagenet-200 --out /data/predictions
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import trainer_service  # noqa: F401  (sets the TensorFlow environment before it is imported)
from jobkit.files import atomic_write_json, atomic_write_text
from shard_format.metadata import DatasetMetadata, load_metadata
from shard_format.schema import dataset_dir
from trainer_service.training.data import test_images, val_pipeline
from trainer_service.training.files import RunPaths

PREDICT_BATCH = 256
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


def predict_and_evaluate(
    model,
    data_dir: Path,
    metadata: DatasetMetadata,
    out_dir: Path,
    *,
    batch_size: int = PREDICT_BATCH,
    limit_val_steps: int | None = None,
    checkpoint: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``predictions.txt`` and ``evaluation.json`` into ``out_dir``; returns the latter."""
    paths = RunPaths(Path(out_dir))
    lines = predict_lines(model, data_dir, metadata, batch_size)
    atomic_write_text(paths.predictions, "".join(f"{line}\n" for line in lines))
    evaluation = {
        **(checkpoint or {}),
        **evaluate_val(model, data_dir, metadata, batch_size, limit_val_steps),
        "test_predictions": len(lines),
        "predictions_file": paths.predictions.name,
    }
    atomic_write_json(paths.evaluation, evaluation)
    return evaluation


def load_for_inference(checkpoint: Path):
    """A checkpoint as a model compiled for evaluation (loss + top-1/top-5 metrics)."""
    import keras

    import trainer_service.model  # noqa: F401  (registers the layers a checkpoint holds)

    model = keras.models.load_model(checkpoint, compile=False)
    model.compile(optimizer="sgd", loss=loss(), metrics=metrics())  # evaluate needs no more
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer_service.predict", description=__doc__)
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--run", help="run id: its dataset, checkpoint and folder are used")
    parser.add_argument(
        "--checkpoint", default="best", help="with --run: best, latest, N or epoch-000N.keras"
    )
    parser.add_argument("--checkpoint-path", type=Path, help="a .keras file (instead of --run)")
    parser.add_argument("--dataset", help="dataset name (default: the run's)")
    parser.add_argument("--out", type=Path, help="output folder (default: the run folder)")
    parser.add_argument("--batch-size", type=int, default=PREDICT_BATCH)
    args = parser.parse_args(argv)

    from trainer_service.training import checkpoints

    dataset, out = args.dataset, args.out
    if args.run:
        paths = RunPaths.for_run(args.data_root, args.run)
        try:
            path = checkpoints.resolve(paths, args.checkpoint)
        except FileNotFoundError as exc:
            parser.error(str(exc))
        dataset = dataset or json.loads(paths.config.read_text())["dataset"]
        out = out or paths.root
    elif args.checkpoint_path:
        path = args.checkpoint_path
        if not path.is_absolute():
            path = args.data_root / path
        if not dataset or not out:
            parser.error("--checkpoint-path needs --dataset and --out")
    else:
        parser.error("give --run or --checkpoint-path")
    data_dir = dataset_dir(args.data_root, dataset)
    metadata = load_metadata(data_dir)
    model = load_for_inference(path)
    Path(out).mkdir(parents=True, exist_ok=True)
    result = predict_and_evaluate(
        model,
        data_dir,
        metadata,
        out,
        batch_size=args.batch_size,
        checkpoint={"checkpoint": str(path)},
    )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
