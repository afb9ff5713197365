"""``python -m trainer_service.predict``: test-set predictions and val scores of any checkpoint.

    python -m trainer_service.predict --data-root /data --run <run_id> [--checkpoint best]
    python -m trainer_service.predict --data-root /data --checkpoint-path runs/x/model.keras \\
        --dataset tiny-imagenet-200 --out /data/predictions

Writes ``predictions.txt`` and ``evaluation.json`` (see :mod:`trainer_service.engine.evaluate`)
into the run folder, or ``--out``, and prints the evaluation.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from datavolume.datasets import DatasetUnavailable, open_dataset
from datavolume.layout import DataRoot
from trainer_service.runs.checkpoints import resolve
from trainer_service.settings import TENSORFLOW_ENV


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
    parser.add_argument("--batch-size", type=int, help="default: 256")
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
    from trainer_service.engine.evaluate import PREDICT_BATCH, loss, metrics, predict_and_evaluate
    from trainer_service.saved import load_model

    model = load_model(path, compile=False)
    model.compile(optimizer="sgd", loss=loss(), metrics=metrics())  # evaluate needs no more
    Path(out).mkdir(parents=True, exist_ok=True)
    result = predict_and_evaluate(
        model,
        ready.folder,
        ready.metadata,
        out,
        batch_size=args.batch_size or PREDICT_BATCH,
        checkpoint={"checkpoint": str(path)},
    )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
