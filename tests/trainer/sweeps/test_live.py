"""Sweeps through live trainer services (uvicorn processes, as ``scripts/run_local.py`` starts
them), whose trials are real training runs of a tiny model: two trials at a time on two CPU
slots; a trial pruned at an epoch's end, which the study knows; the service SIGKILLed with its
workers mid-sweep and started again, the sweep finishing with its trials; two services sharing
one study, each trial run once."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from scripts.run_local import Service, compose_config, start_service, stop_service
from tests.trainer.support import TINY, TOY, wait_for
from tests.utils.datasets import write_toy_dataset

pytestmark = pytest.mark.slow

BASE = {**{k: v for k, v in TINY.items() if k != "dataset"}, "epochs": 2}
SWEEP_TIMEOUT_S = 600


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    write_toy_dataset(root, TOY, train_per_class=64)
    return root


@contextmanager
def trainer(root: Path, monkeypatch, name: str = "trainer", **env: str) -> Iterator[Service]:
    """A trainer service on ``root``: two CPU slots, quick sweep passes, ``env`` on top."""
    settings = {"TRAINER_MAX_CONCURRENT_JOBS": "2", "TRAINER_SWEEP_POLL_S": "0.3", **env}
    for key, value in settings.items():
        monkeypatch.setenv(key, value)
    service = start_service("trainer", compose_config(), root, log_dir=root / "logs" / name)
    try:
        yield service
    finally:
        stop_service(service)


def post(service: Service, body: dict) -> dict:
    response = httpx.post(f"{service.url}/v1/sweeps", json=body, timeout=60)
    assert response.status_code == 202, response.text
    return response.json()


def status(service: Service, name: str) -> dict:
    response = httpx.get(f"{service.url}/v1/sweeps/{name}", timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def ended(service: Service, name: str) -> dict:
    return wait_for(
        lambda: (s := status(service, name))["state"] not in ("running", "stopping") and s,
        timeout=SWEEP_TIMEOUT_S,
        interval=1.0,
    )


def runs(service: Service, **params) -> list[dict]:
    response = httpx.get(f"{service.url}/v1/runs", params=params, timeout=60)
    return response.json()["items"]


def history_epochs(root: Path, run: dict) -> list[int]:
    import json

    return [row["epoch"] for row in json.loads((root / run["run_dir"] / "history.json")
                                                .read_text())]  # fmt: skip


def most_at_once(spans: list[tuple[datetime, datetime]]) -> int:
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def test_six_trials_run_two_at_a_time_on_two_slots(root, monkeypatch):
    body = {"name": "six", "dataset": TOY, "base": BASE,
            "space": {"learning_rate": {"low": 0.005, "high": 0.05, "log": True},
                      "seed": {"choices": [0, 1, 2]}},
            "sampler": "random", "pruner": "none", "max_trials": 6,
            "max_concurrent": 2}  # fmt: skip
    with trainer(root, monkeypatch) as service:
        post(service, body)
        done = ended(service, "six")
        trial_runs = runs(service, tag="sweep:six")
        plot = httpx.get(f"{service.url}/v1/sweeps/six/plot", timeout=60)
    assert done["state"] == "succeeded" and done["counts"]["complete"] == 6, done
    assert sorted(t["number"] for t in done["trials"]) == list(range(6))
    assert {t["run_id"] for t in done["trials"]} == {r["id"] for r in trial_runs}
    assert all(r["state"] == "succeeded" and r["trial"]["sweep"] == "six" for r in trial_runs)
    assert {r["request"]["name"] for r in trial_runs} == {f"six-{n}" for n in range(6)}
    spans = [(datetime.fromisoformat(r["started_at"]), datetime.fromisoformat(r["finished_at"]))
             for r in trial_runs]  # fmt: skip
    assert most_at_once(spans) == 2  # two at a time, never three
    assert {tuple(r["devices"]) for r in trial_runs} <= {("cpu0",), ("cpu1",)}
    best = max(done["trials"], key=lambda t: t["value"])
    assert done["best"]["number"] == best["number"] and done["best"]["params"] == best["params"]
    assert done["epochs"] == 12 and plot.headers["content-type"] == "image/png"


def test_a_worse_trial_is_pruned_at_an_epochs_end_and_the_study_knows(root, monkeypatch):
    # Batch 8, 3 epochs, a fixed batch order: learning rate 0.02 reaches val top-1 0.25, 0.5,
    # 0.75; 1e-7 stays at chance (0.25) and is below 0.5 at epoch 2. The grid's seed 1 trains
    # 0.02 first; the median pruner (one completed trial; pruning from epoch 2) prunes the other
    # there.
    body = {"name": "prune", "dataset": TOY,
            "base": {**BASE, "epochs": 3, "batch_size": 8, "schedule": "constant",
                     "deterministic": True},
            "space": {"learning_rate": {"choices": [0.02, 1e-7]}},
            "sampler": "grid", "seed": 1, "pruner": "median", "startup_trials": 1,
            "prune_after_epochs": 2, "max_trials": 2, "max_concurrent": 1}  # fmt: skip
    with trainer(root, monkeypatch) as service:
        post(service, body)
        done = ended(service, "prune")
        by_run = {r["id"]: r for r in runs(service, tag="sweep:prune")}
    assert done["state"] == "succeeded", done
    first, second = sorted(done["trials"], key=lambda t: t["number"])
    assert first["params"] == {"learning_rate": 0.02} and first["state"] == "complete"
    assert second["params"] == {"learning_rate": 1e-7} and second["state"] == "pruned"
    assert done["counts"] == {"finished": 2, "complete": 1, "active": 0, "failed": 0}
    pruned = by_run[second["run_id"]]
    assert pruned["state"] == "succeeded" and pruned["result"]["stopped_early"] == "pruned"
    assert history_epochs(root, pruned) == [1, 2] and second["epochs"] == 2
    assert {c["epoch"] for c in pruned["checkpoints"] if c["kind"] == "epoch"} == {1, 2}
    assert pruned["exports"] == {}  # it ends at its checkpoint: no final model
    assert second["value"] == pruned["training"]["last_epoch"]["val_accuracy"]
    assert done["best"]["number"] == first["number"]


def test_a_sweep_survives_its_service_and_workers_killed(root, monkeypatch):
    body = {"name": "crash", "dataset": TOY, "base": {**BASE, "epochs": 3},
            "space": {"learning_rate": {"low": 0.005, "high": 0.05}},
            "sampler": "random", "pruner": "none", "max_trials": 4,
            "max_concurrent": 2}  # fmt: skip
    with trainer(root, monkeypatch) as service:
        post(service, body)

        # SIGKILL mid-sweep: once a trial has trained an epoch, the service and every worker.
        def trained_an_epoch() -> bool:
            trials = status(service, "crash")["trials"]
            return any(t["epochs"] >= 1 and t["state"] == "running" for t in trials)

        wait_for(trained_an_epoch, timeout=SWEEP_TIMEOUT_S, interval=0.5)
        workers = [r["pid"] for r in runs(service, state="running") if r["pid"]]
        assert workers
        for pgid in (service.process.pid, *workers):
            os.killpg(pgid, signal.SIGKILL)
        service.process.wait()
    with trainer(root, monkeypatch) as again:
        done = ended(again, "crash")
        trial_runs = runs(again, tag="sweep:crash")
    assert done["state"] == "succeeded" and done["counts"]["complete"] == 4, done
    assert done["counts"]["failed"] == 0 and len(done["trials"]) == 4  # resumed, not replaced
    assert any(r["restarts"] >= 1 for r in trial_runs)
    for run in trial_runs:
        assert run["state"] == "succeeded" and history_epochs(root, run) == [1, 2, 3]


def test_two_services_share_one_study_and_run_each_trial_once(root, monkeypatch):
    body = {"name": "shared", "dataset": TOY, "base": BASE,
            "space": {"learning_rate": {"low": 0.005, "high": 0.05}},
            "sampler": "tpe", "pruner": "median", "max_trials": 4, "max_concurrent": 2}  # fmt: skip
    one_slot = {"TRAINER_MAX_CONCURRENT_JOBS": "1"}
    with (
        trainer(root, monkeypatch, "a", TRAINER_STATE_DIR=str(root / "state" / "a"), **one_slot)
        as a,
        trainer(root, monkeypatch, "b", TRAINER_STATE_DIR=str(root / "state" / "b"), **one_slot)
        as b,
    ):  # fmt: skip
        post(a, body)  # b joins by itself: it shares the volume
        done = ended(a, "shared")
        seen_by_b = status(b, "shared")
        runs_a = {r["id"] for r in runs(a, tag="sweep:shared")}
        runs_b = {r["id"] for r in runs(b, tag="sweep:shared")}
    assert done["state"] == "succeeded" and done["counts"]["complete"] == 4, done
    assert seen_by_b["trials"] == done["trials"]  # either shows every trial
    trial_runs = [t["run_id"] for t in done["trials"]]
    assert len(set(trial_runs)) == 4 and set(trial_runs) == runs_a | runs_b
    assert not runs_a & runs_b and runs_a and runs_b  # each ran its share, none twice
    assert len({t["host"] for t in done["trials"]}) == 2
