"""What ``POST /v1/runs/{id}/predict`` costs on this machine's CPU with the warm predictor, side by
side with the same code called in-process, and what it takes from a training run beside it.

    python -m bench.predict [--repeats 3] [--predict-widths half,full] [--predict-requests 50]
        [--predict-duration 30] [--predict-clients 8]

**The model and images.** For each width a run folder holds a 200-class model saved with its
optimizer state (as a run's ``best.keras`` is) and the predictor's ONNX export of it
(``serving/best.onnx``, made once by the predictor's own export command); its job record is
written into the trainer's database, so the service serves it as any finished run.
Photo-sized JPEGs (500x375) are the images, the same for every path.

**Latency, side by side, per repeat.** In-process: a fresh process runs the predictor's own code
(``trainer_service.inference.predictor.Predictor.classify``: decoding, batching, ONNX Runtime,
top-5) with the service's default settings (2 threads, niceness 15). Over HTTP: the trainer
service started as a real uvicorn process with the compose file's environment (as
``scripts/run_local.py`` starts it), a fresh process posting to it from one keep-alive
connection. Each path is warmed up with 3 requests (the predictor process starts and loads the
model), then ``--predict-requests`` requests of 1 image and a quarter as many of 16, one after
the other (p50 and p99 of each), then ``--predict-clients`` clients (threads with a connection
each) post 1 image back to back for ``--predict-duration`` seconds: requests/s, p50 and p99 of
the answered ones, and every answer that was not a 200 counted by status (a 429 is a refusal of
the bounded queue; a 5xx is a failure).

The service and the in-process runs read the ``TRAINER_PREDICT_*`` variables set where this
runs (``TRAINER_PREDICT_NICE=19 python -m bench.predict`` measures another niceness); the table
says which settings it ran with.

**Memory.** The predictor process's resident memory (its own figure, ``/proc/self/statm``)
after the HTTP measurements with the one model, then with ``predict_max_models`` (4) loaded:
three copies of the run folder (their exports reused) each get a request.

**A training run beside it** (the first width only). The train step of a width-32 model (batch
32, as ``bench.recipe_step`` measures it) runs at the workers' niceness (10) alone, then while
one client posts 1 image back to back to the service: the ratio is what predicting takes from
training when both share this CPU. (On a GPU host the predictor takes no GPU memory and no GPU
time; the shared part is the CPU that feeds the GPU.)
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path

from bench.common import (
    RunInfo,
    Stats,
    log,
    md_table,
    percentile,
    ratio,
    run_child,
    run_standalone,
)

SECTION = "predict"
NEEDS_DATA = False
CLASSES = 200
TOKEN = "bench-predict-token"
TRAIN_WIDTH, TRAIN_BATCH, TRAIN_STEPS = 32, 32, 20
WARMUP = 3
#: Images of each size measured; the 16-image requests are a quarter as many.
SIZES = (1, 16)
REQUEST_TIMEOUT_S = 120.0


# --------------------------------------------------------------------------- the run folders


def make_run(root: str, run_id: str, width: str) -> None:
    """``runs/<run_id>`` under ``root``: config.json, dataset.json and checkpoints/best.keras (a
    200-class model of ``width``, with its optimizer state)."""
    import keras
    import numpy as np

    from datavolume.files import atomic_write_json
    from datavolume.layout import DataRoot
    from trainer_service.engine.train import build_model, make_optimizer
    from trainer_service.runs.config import TrainConfig

    run = DataRoot(Path(root)).run(run_id)
    run.make()
    config = TrainConfig(dataset="bench", width=width)
    atomic_write_json(run.config, config.model_dump(mode="json"))
    classes = [{"index": i, "wnid": f"n{i:08d}", "words": f"class {i}"} for i in range(CLASSES)]
    atomic_write_json(run.dataset_record, {"name": "bench", "classes": classes})
    model = build_model(config, CLASSES)
    model.compile(
        optimizer=make_optimizer(config.optimization, 100), loss="sparse_categorical_crossentropy"
    )
    x = np.zeros((2, 64, 64, 3), np.uint8)
    model.fit(x, np.zeros(2, np.int32), epochs=1, verbose=0)  # builds the optimizer's slots
    keras.saving.save_model(model, run.best)


def prepare(root: Path, width: str, copies: int, logs: Path) -> list[str]:
    """Run ids of ``copies`` finished runs of one ``width`` model, its export made once (the
    copies keep the files' modification times, so the export serves them all)."""
    from datavolume.layout import DataRoot
    from jobkit.store import JobStore
    from trainer_service.inference.models import export_command
    from trainer_service.inference.process import EXPORT_ENV, run_json_process
    from trainer_service.jobs import TRAINING_KIND
    from trainer_service.settings import Settings

    store = JobStore(Settings(data_root=root).jobs_db)
    ids = []
    for copy in range(copies):
        job = store.create(TRAINING_KIND, {"dataset": "bench", "width": width, "copy": copy})
        store.finish(job.id, "succeeded")
        ids.append(job.id)
    volume = DataRoot(root)
    first = volume.run(ids[0])
    log(f"predict: a width-{width} model and its export")
    run_child(
        "bench.predict:make_run",
        {"root": str(root), "run_id": ids[0], "width": width},
        log_path=logs,
    )
    run_json_process(export_command(first, first.best), {**os.environ, **EXPORT_ENV}, 1800,
                     "the export")  # fmt: skip
    for other in ids[1:]:
        shutil.copytree(first.root, volume.run(other).root, copy_function=shutil.copy2)
    return ids


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


# --------------------------------------------------------------------------- measuring (children)


def measure(call, new_caller, requests: int, clients: int, duration_s: float) -> dict:
    """``call(images)`` answers one request (raising on anything but an answer, with the HTTP
    status in ``status`` when there is one); ``new_caller()`` makes a ``call`` for one client.
    Seconds per request of each size, then the load of ``clients`` clients."""
    images = photos(max(SIZES))
    for _ in range(WARMUP):
        call(images[:1])
    out: dict = {"seconds": {}}
    for size in SIZES:
        count = requests if size == 1 else max(requests // 4, 2)
        seconds = []
        for _ in range(count):
            start = time.perf_counter()
            call(images[:size])
            seconds.append(time.perf_counter() - start)
        out["seconds"][str(size)] = seconds
    out["load"] = load(new_caller, images[:1], clients, duration_s)
    return out


def load(new_caller, images, clients: int, duration_s: float) -> dict:
    """``clients`` threads call back to back until ``duration_s`` has passed: the seconds of
    each answered request, and the others counted by status."""
    latencies: list[float] = []
    refused: dict[str, int] = {}
    lock = threading.Lock()
    callers = [new_caller() for _ in range(clients)]
    for caller in callers:
        caller(images)  # connected and warm before the clock starts
    start = time.perf_counter()
    deadline = start + duration_s

    def client(caller) -> None:
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            try:
                caller(images)
            except Exception as exc:
                key = str(getattr(exc, "status", None) or type(exc).__name__)
                with lock:
                    refused[key] = refused.get(key, 0) + 1
            else:
                with lock:
                    latencies.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=client, args=(c,)) for c in callers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"latencies": latencies, "refused": refused, "window_s": time.perf_counter() - start}


class Refused(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"HTTP {status}: {text[:200]}")
        self.status = status


def child_http(url: str, run_id: str, requests: int, clients: int, duration_s: float) -> dict:
    """:func:`measure` over HTTP, each client on a keep-alive connection of its own."""
    import httpx

    def new_caller():
        client = httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT_S,
                              headers={"Authorization": f"Bearer {TOKEN}"})  # fmt: skip

        def call(images) -> None:
            files = [("images", (name, data, "image/jpeg")) for name, data in images]
            response = client.post(f"/v1/runs/{run_id}/predict", files=files)
            if response.status_code != 200:
                raise Refused(response.status_code, response.text)
            assert len(response.json()["items"]) == len(images)

        return call

    return measure(new_caller(), new_caller, requests, clients, duration_s)


def child_in_process(root: str, run_id: str, requests: int, clients: int, duration_s: float):
    """:func:`measure` of the predictor's code called here, with the service's settings."""
    from datavolume.layout import DataRoot
    from trainer_service.inference.predictor import Predictor, PredictorOptions
    from trainer_service.settings import Settings

    settings = Settings(data_root=Path(root))
    os.nice(settings.predict_nice)  # as the predictor process runs
    predictor = Predictor(DataRoot(Path(root)), PredictorOptions.from_settings(settings))
    run = predictor.root.run(run_id)

    def call(images) -> None:
        answer = predictor.classify(run, "best", images)
        assert len(answer["items"]) == len(images) and answer["items"][0]["top"]

    return measure(call, lambda: call, requests, clients, duration_s)


def child_train_rate(nice: int) -> float:
    """Train images/s of ``bench.recipe_step``'s homework row, at niceness ``nice``."""
    from bench.recipe_step import child_rows

    os.nice(nice)
    rows = child_rows({"homework": {}}, TRAIN_WIDTH, TRAIN_BATCH, 3, TRAIN_STEPS, 2)
    return rows["homework"]["train"]


# --------------------------------------------------------------------------- the service


def predictor_stats(service) -> dict:
    """The service's predictor's statistics, asked on its own socket."""
    import psutil

    from trainer_service.inference import wire

    for child in psutil.Process(service.process.pid).children(recursive=True):
        command = child.cmdline()
        if "trainer_service.inference.server" in command:
            socket = Path(command[command.index("--socket") + 1])
            return wire.ask(socket, {"op": "stats"}, timeout_s=60)[0]
    raise RuntimeError("the service has no predictor process")


def post_one(service, run_id: str, image: tuple[str, bytes]) -> None:
    import httpx

    response = httpx.post(
        f"{service.url}/v1/runs/{run_id}/predict",
        files=[("images", (image[0], image[1], "image/jpeg"))],
        headers=service.headers,
        timeout=REQUEST_TIMEOUT_S,
    )
    response.raise_for_status()


def measure_width(args, root: Path, ids: list[str], logs: Path, found: dict, disturbance):
    """One repeat of one width: in-process, then over HTTP, the predictor's memory, and with
    ``disturbance`` (a dict of lists) the training beside predictions."""
    from scripts.run_local import compose_config, start_service, stop_service

    params = {"requests": args.predict_requests, "clients": args.predict_clients,
              "duration_s": args.predict_duration}  # fmt: skip
    log(f"predict: in-process, {len(ids)} run(s)")
    where = {"root": str(root), "run_id": ids[0]}
    found["in-process"].append(
        run_child("bench.predict:child_in_process", {**where, **params}, log_path=logs).result
    )
    service = start_service("trainer", compose_config(), root, TOKEN, log_dir=logs.parent)
    try:
        log("predict: over HTTP")
        where = {"url": service.url, "run_id": ids[0]}
        found["http"].append(
            run_child("bench.predict:child_http", {**where, **params}, log_path=logs).result
        )
        stats = predictor_stats(service)
        found["rss_one"].append(stats["rss_bytes"])
        image = photos(1)[0]
        for other in ids[1:]:
            post_one(service, other, image)
        stats = predictor_stats(service)
        assert len(stats["models"]) == len(ids) and stats["exports"] == 0, stats
        found["rss_max"].append(stats["rss_bytes"])
        if disturbance is not None:
            measure_disturbance(service, ids[0], logs, disturbance)
    finally:
        stop_service(service)


def measure_disturbance(service, run_id: str, logs: Path, found: dict) -> None:
    """Train images/s alone, then with one client predicting back to back."""
    log("predict: training alone")
    found["alone"].append(
        run_child("bench.predict:child_train_rate", {"nice": 10}, log_path=logs).result
    )
    stop = threading.Event()
    done = [0]
    image = photos(1)[0]

    def predict_until_stopped() -> None:
        while not stop.is_set():
            post_one(service, run_id, image)
            done[0] += 1

    thread = threading.Thread(target=predict_until_stopped, daemon=True)
    thread.start()
    log("predict: training beside predictions")
    try:
        found["beside"].append(
            run_child("bench.predict:child_train_rate", {"nice": 10}, log_path=logs).result
        )
    finally:
        stop.set()
        thread.join()
    found["predictions"].append(done[0])


# --------------------------------------------------------------------------- the section


def summary(result: dict) -> dict:
    """One repeat's figures: milliseconds at p50/p99 per size, and the load's."""
    ms = {size: [s * 1000 for s in values] for size, values in result["seconds"].items()}
    load = result["load"]
    latencies = [s * 1000 for s in load["latencies"]]
    refused = load["refused"]
    failed = sum(n for k, n in refused.items() if k.isdigit() and k.startswith("5"))
    return {
        **{f"{size} p50": percentile(v, 50) for size, v in ms.items()},
        **{f"{size} p99": percentile(v, 99) for size, v in ms.items()},
        "rps": len(latencies) / load["window_s"],
        "load p50": percentile(latencies, 50),
        "load p99": percentile(latencies, 99),
        "5xx": failed,
        "429": refused.get("429", 0),
        "other": sum(refused.values()) - failed - refused.get("429", 0),
    }


def render(results: dict, info: RunInfo, args) -> str:
    clients, duration = args.predict_clients, args.predict_duration
    rows, ratios, memory = [], [], []
    for width, found in results["widths"].items():
        sums = {path: [summary(r) for r in found[path]] for path in ("http", "in-process")}

        def cell(path: str, key: str, spec: str = ",.1f", sums=sums) -> str:
            return Stats.of(s[key] for s in sums[path]).fmt(spec)

        for path, label in (("http", "HTTP"), ("in-process", "in-process")):
            rows.append([
                width, label,
                f"{cell(path, '1 p50')} / {cell(path, '1 p99')}",
                f"{cell(path, '16 p50')} / {cell(path, '16 p99')}",
                cell(path, "rps"),
                f"{cell(path, 'load p50')} / {cell(path, 'load p99')}",
                " / ".join(str(sum(x[k] for x in sums[path])) for k in ("5xx", "429", "other")),
            ])  # fmt: skip

        def median(path: str, key: str, sums=sums) -> float:
            return Stats.of(s[key] for s in sums[path]).median

        ratios.append([width] + [ratio(median("http", k), median("in-process", k))
                                 for k in ("1 p50", "16 p50", "rps")])  # fmt: skip
        memory.append([width, Stats.of(found["rss_one"]).fmt(",.0f", scale=1 / 2**20),
                       Stats.of(found["rss_max"]).fmt(",.0f", scale=1 / 2**20)])  # fmt: skip
    used = results["settings"]
    note = (
        f"{CLASSES} classes; photo-sized JPEGs (500x375); the predictor's settings "
        f"({used['predict_threads']} threads, niceness {used['predict_nice']}, batches of up to "
        f"{used['predict_max_batch']} images, {used['predict_batch_wait_ms']:g} ms batch wait); "
        f"{args.predict_requests} requests of 1 image and {max(args.predict_requests // 4, 2)} "
        f"of 16 after 3 warm-up requests; {clients} clients for {duration:g} s"
    )
    latency = md_table(
        ["width", "path", "1 image p50 / p99: ms", "16 images p50 / p99: ms",
         f"{clients} clients: requests/s", f"{clients} clients p50 / p99: ms",
         "5xx / 429 / other: all repeats"],
        rows, "llrrrrr",
    )  # fmt: skip
    side = md_table(
        ["width", "1 image p50: HTTP vs in-process", "16 images p50: HTTP vs in-process",
         f"{clients} clients requests/s: HTTP vs in-process"],
        ratios,
    )  # fmt: skip
    memory_headers = ["width", "predictor RSS, 1 model: MiB", "predictor RSS, 4 models: MiB"]
    rss = md_table(memory_headers, memory)
    text = f"{info.header(note)}\n\n{latency}\n\n{side}\n\n{rss}\n"
    if results["disturbance"]["alone"]:
        d = results["disturbance"]
        alone, beside = Stats.of(d["alone"]), Stats.of(d["beside"])
        text += "\n" + md_table(
            ["training step (width 32, batch 32, niceness 10)", "train images/s", "vs alone"],
            [
                ["alone", alone.fmt(",.1f"), "1.00x"],
                [
                    f"beside 1-image predictions back to back over HTTP "
                    f"({sum(d['predictions'])} in all)",
                    beside.fmt(",.1f"),
                    f"{beside.median / alone.median:.2f}x",
                ],
            ],
        ) + "\n"  # fmt: skip
    return text


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--predict-widths",
        type=lambda text: [w.strip() for w in text.split(",") if w.strip()],
        default=["half", "full"],
        help="model widths measured (default: half,full); the training beside predictions "
        "runs with the first",
    )
    p.add_argument(
        "--predict-requests",
        type=int,
        default=50,
        help="1-image requests per path and repeat (16-image ones: a quarter as many)",
    )
    p.add_argument(
        "--predict-duration", type=float, default=30.0, help="seconds of the clients' load"
    )
    p.add_argument(
        "--predict-clients", type=int, default=8, help="clients posting back to back (default 8)"
    )


def run(data, args, info: RunInfo) -> str:
    """``bench.run_all``'s entry: measure, then the section's markdown."""
    from trainer_service.settings import Settings

    work = args.work_dir / "predict"
    logs = work / "logs" / "predict.log"
    shutil.rmtree(work / "data", ignore_errors=True)  # fresh runs, database and exports
    settings = Settings(data_root=work)  # the service's, with any TRAINER_PREDICT_* set here
    results: dict = {
        "settings": {k: v for k, v in settings.model_dump().items() if k.startswith("predict")},
        "widths": {},
        "disturbance": {"alone": [], "beside": [], "predictions": []},
    }
    copies = settings.predict_max_models
    for i, width in enumerate(args.predict_widths):
        root = work / "data"
        ids = prepare(root, width, copies, logs)
        found = results["widths"][width] = {"http": [], "in-process": [], "rss_one": [],
                                            "rss_max": []}  # fmt: skip
        for r in range(args.repeats):
            log(f"predict: width {width}, repeat {r + 1}/{args.repeats}")
            disturbance = results["disturbance"] if i == 0 else None
            measure_width(args, root, ids, logs, found, disturbance)
    (work / "results.json").write_text(json.dumps(results, indent=1))
    return render(results, info, args)


def main(argv: list[str] | None = None) -> int:
    return run_standalone(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
