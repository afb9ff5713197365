"""What ``POST /v1/runs/{id}/predict`` costs on this machine's CPU, and what it costs a training
run beside it.

    python -m bench.predict [--repeats 3] [--predict-backends tensorflow,jax]

**Latency and memory.** A run folder is made with a 200-class model of each width, saved with
its optimizer state as a run's ``best.keras`` is. Then the endpoint's own code
(``trainer_service.inference.predictor.Predictor.classify``, with the service's default
settings: 2 threads, niceness 15) classifies 1 and then 16 photo-sized JPEGs (500x375), one
request after the other, in a fresh measuring process per backend and width; the table gives
each request's wall time (a fresh predict process each time: Python, Keras and the checkpoint
load, then the images) and the predict process's peak RSS (the kernel's, over that process's
requests).

**A training run beside it.** The train step of a width-32 model (batch 32, as
``bench.recipe_step`` measures it) runs at the workers' niceness (10) alone, then while
predictions of one image run back to back through the same code: the ratio is what predicting
takes from training when both share this CPU. (On a GPU host the predict process takes no GPU
memory and no GPU time; the shared part is the CPU that feeds the GPU.)
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import sys
import threading
import time
from pathlib import Path

from bench.common import RunInfo, Stats, log, md_table, run_child, run_standalone

SECTION = "predict"
NEEDS_DATA = False
CLASSES = 200
WIDTHS = ("half", "full")
TRAIN_WIDTH, TRAIN_BATCH, TRAIN_STEPS = 32, 32, 20


def make_run(root: str, width: str) -> str:
    """A run folder ``runs/bench-<width>`` under ``root`` with config.json, dataset.json and
    checkpoints/best.keras (a 200-class model, with its optimizer state); returns its id."""
    import keras
    import numpy as np

    from datavolume.files import atomic_write_json
    from datavolume.layout import DataRoot
    from trainer_service.engine.train import build_model, make_optimizer
    from trainer_service.runs.config import TrainConfig

    run_id = f"bench{width}"
    run = DataRoot(Path(root)).run(run_id)
    run.make()
    config = TrainConfig(dataset="bench", width=width)
    atomic_write_json(run.config, config.model_dump(mode="json"))
    classes = [{"index": i, "wnid": f"n{i:08d}", "words": f"class {i}"} for i in range(CLASSES)]
    atomic_write_json(run.dataset_record, {"name": "bench", "classes": classes})
    model = build_model(config, CLASSES)
    model.compile(optimizer=make_optimizer(config, 100), loss="sparse_categorical_crossentropy")
    x = np.zeros((2, 64, 64, 3), np.uint8)
    model.fit(x, np.zeros(2, np.int32), epochs=1, verbose=0)  # builds the optimizer's slots
    keras.saving.save_model(model, run.best)
    return run_id


def photos(count: int) -> list[tuple[str, bytes]]:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    out = []
    for i in range(count):
        pixels = rng.integers(0, 256, (375, 500, 3), dtype=np.uint8)
        data = io.BytesIO()
        Image.fromarray(pixels).save(data, format="JPEG", quality=90)
        out.append((f"photo-{i}.jpg", data.getvalue()))
    return out


def child_latency(root: str, run_id: str, backend: str, counts: list[int]) -> dict:
    """Wall time of each request (the endpoint's code) and the predict processes' peak RSS."""
    from trainer_service.inference.predictor import Predictor, Upload
    from trainer_service.settings import Settings

    predictor = Predictor(Settings(data_root=Path(root), predict_keras_backend=backend))
    out: dict = {"seconds": {}}
    for count in counts:
        uploads = [Upload(name, data) for name, data in photos(count)]
        start = time.perf_counter()
        answer = predictor.classify(run_id, "best", uploads)
        out["seconds"][str(count)] = time.perf_counter() - start
        assert len(answer["items"]) == count and all(i.get("top") for i in answer["items"])
    out["peak_rss"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    return out


def child_train_rate(nice: int) -> float:
    """Train images/s of ``bench.recipe_step``'s homework row, at niceness ``nice``."""
    from bench.recipe_step import child_rows

    os.nice(nice)
    rows = child_rows({"homework": {}}, TRAIN_WIDTH, TRAIN_BATCH, 3, TRAIN_STEPS, 2)
    return rows["homework"]["train"]


def measure_latency(args, logs: Path) -> dict:
    root = args.work_dir / "predict"
    found: dict = {}
    for width in WIDTHS:
        run_id = run_child(
            "bench.predict:make_run", {"root": str(root), "width": width}, log_path=logs
        ).result
        for backend in args.predict_backends:
            key = f"{backend}/{width}"
            found[key] = {"1": [], "16": [], "peak_rss": []}
            for r in range(args.repeats):
                log(f"predict: {key}, repeat {r + 1}/{args.repeats}")
                run = run_child(
                    "bench.predict:child_latency",
                    {"root": str(root), "run_id": run_id, "backend": backend, "counts": [1, 16]},
                    log_path=logs,
                ).result
                for count, seconds in run["seconds"].items():
                    found[key][count].append(seconds)
                found[key]["peak_rss"].append(run["peak_rss"])
    return found


def measure_disturbance(args, logs: Path) -> dict:
    """Train images/s alone and with predictions running back to back, alternating."""
    from trainer_service.inference.predictor import Predictor, Upload
    from trainer_service.settings import Settings

    root = args.work_dir / "predict"
    settings = Settings(data_root=root, predict_keras_backend="tensorflow")
    predictor = Predictor(settings)
    upload = [Upload(*photos(1)[0])]
    rates: dict[str, list[float]] = {"alone": [], "beside predictions": []}
    done_predictions = [0]
    for r in range(args.repeats):
        log(f"predict: training alone, repeat {r + 1}/{args.repeats}")
        rates["alone"].append(
            run_child("bench.predict:child_train_rate", {"nice": 10}, log_path=logs).result
        )
        stop = threading.Event()

        def predict_until_stopped(stop: threading.Event = stop) -> None:
            while not stop.is_set():
                predictor.classify("benchhalf", "best", upload)
                done_predictions[0] += 1

        thread = threading.Thread(target=predict_until_stopped, daemon=True)
        thread.start()
        time.sleep(3)  # the first predict process is under way
        log(f"predict: training beside predictions, repeat {r + 1}/{args.repeats}")
        try:
            rates["beside predictions"].append(
                run_child("bench.predict:child_train_rate", {"nice": 10}, log_path=logs).result
            )
        finally:
            stop.set()
            thread.join()
    return {"rates": rates, "predictions": done_predictions[0]}


def render(latency: dict, disturbance: dict, info: RunInfo, args) -> str:
    rows = []
    for key, values in latency.items():
        backend, width = key.split("/")
        rows.append(
            [
                backend,
                width,
                Stats.of(values["1"]).fmt(",.1f"),
                Stats.of(values["16"]).fmt(",.1f"),
                Stats.of(values["peak_rss"]).fmt(",.0f", scale=1 / 2**20),
            ]
        )
    note = (
        f"{CLASSES} classes; photo-sized JPEGs (500x375); the endpoint's code with the service's "
        "defaults (a fresh predict process per request: 2 threads, niceness 15, CPU only)."
    )
    latency_table = md_table(
        ["backend", "width", "1 image: s", "16 images: s", "predict process peak RSS: MiB"], rows
    )
    alone = Stats.of(disturbance["rates"]["alone"])
    beside = Stats.of(disturbance["rates"]["beside predictions"])
    disturbance_table = md_table(
        ["training step (width 32, batch 32, niceness 10)", "train images/s", "vs alone"],
        [
            ["alone", alone.fmt(",.1f"), "1.00x"],
            [
                f"beside predictions back to back ({disturbance['predictions']} in all)",
                beside.fmt(",.1f"),
                f"{beside.median / alone.median:.2f}x",
            ],
        ],
    )
    return f"{info.header(note)}\n\n{latency_table}\n\n{disturbance_table}\n"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--predict-backends",
        type=lambda text: [b.strip() for b in text.split(",") if b.strip()],
        default=["tensorflow", "jax"],
        help="Keras backends of the predict process (default: tensorflow,jax)",
    )


def run(data, args, info: RunInfo) -> str:
    """``bench.run_all``'s entry: measure, then the section's markdown."""
    logs = args.work_dir / "predict" / "logs" / "predict.log"
    latency = measure_latency(args, logs)
    disturbance = measure_disturbance(args, logs)
    (args.work_dir / "predict" / "results.json").write_text(
        json.dumps({"latency": latency, "disturbance": disturbance}, indent=1)
    )
    return render(latency, disturbance, info, args)


def main(argv: list[str] | None = None) -> int:
    return run_standalone(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
