"""The study's parts: Optuna's distributions, samplers and pruners as the request asks, the two
storages (the journal on the volume; a database URL, here SQLite), the ask lock, and the services'
names and leases."""

from __future__ import annotations

import os
import threading
import time

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from datavolume import DataRoot
from trainer_service.settings import Settings
from trainer_service.sweeps import study as studies
from trainer_service.sweeps.controller import Studies
from trainer_service.sweeps.spec import SweepRequest


def spec(**fields) -> SweepRequest:
    body = {"name": "s", "dataset": "toy", "base": {"epochs": 12},
            "space": {"learning_rate": {"low": 0.01, "high": 0.5, "log": True},
                      "crop_padding": {"low": 0, "high": 8},
                      "flip": {"choices": [True, False]}}, **fields}  # fmt: skip
    return SweepRequest.model_validate(body)


def test_each_field_becomes_the_distribution_of_its_type():
    found = studies.distributions(spec())
    assert found["learning_rate"] == FloatDistribution(0.01, 0.5, log=True)
    assert found["crop_padding"] == IntDistribution(0, 8)
    assert found["flip"] == CategoricalDistribution([True, False])


def test_the_samplers_and_pruners_are_optunas():
    assert isinstance(studies.sampler_for(spec(), 3), optuna.samplers.TPESampler)
    assert isinstance(studies.sampler_for(spec(sampler="random"), 3),
                      optuna.samplers.RandomSampler)  # fmt: skip
    grid = spec(sampler="grid", space={"flip": {"choices": [True, False]}})
    assert isinstance(studies.sampler_for(grid, 0), optuna.samplers.GridSampler)
    median = studies.pruner_for(spec(prune_after_epochs=3), 12)
    assert isinstance(median, optuna.pruners.MedianPruner) and median._n_warmup_steps == 3
    assert isinstance(studies.pruner_for(spec(pruner="hyperband"), 12),
                      optuna.pruners.HyperbandPruner)  # fmt: skip
    assert isinstance(studies.pruner_for(spec(pruner="none"), 12), optuna.pruners.NopPruner)
    assert studies.max_epochs(spec()) == 12
    assert studies.max_epochs(spec(base={}, space={"epochs": {"choices": [3, 30]}})) == 30


def test_a_grid_sweep_counts_its_combinations():
    space = {"flip": {"choices": [True, False]}, "seed": {"choices": [0, 1, 2]}}
    grid = spec(sampler="grid", max_trials=16, space=space)
    assert grid.trials_wanted() == 6 and spec(max_trials=16).trials_wanted() == 16


@pytest.mark.parametrize("url", [None, "sqlite:///{root}/studies.db"])
def test_the_study_outlives_its_storage_object(tmp_path, url):
    url = url.format(root=tmp_path) if url else None
    root = DataRoot(tmp_path)
    request = spec()
    made = studies.create(request, studies.storage_for(root.sweep("s"), url))
    trial = made.ask(studies.distributions(request))
    made.tell(trial, 0.5)
    again = studies.load(request, studies.storage_for(root.sweep("s"), url))  # a new service
    assert again.user_attrs["state"] == "running" and again.best_value == 0.5
    assert again.direction == optuna.study.StudyDirection.MAXIMIZE
    assert (tmp_path / "sweeps" / "s" / "study.journal").is_file() == (url is None)


def test_the_service_reads_a_database_url_from_its_settings(tmp_path):
    url = f"sqlite:///{tmp_path}/studies.db"
    stores = Studies(Settings(data_root=tmp_path, sweep_storage=url))
    assert isinstance(stores.storage("s"), optuna.storages.RDBStorage)
    assert isinstance(Studies(Settings(data_root=tmp_path)).storage("s"),
                      optuna.storages.JournalStorage)  # fmt: skip


def test_the_ask_lock_lets_one_service_in_at_a_time(tmp_path):
    folder = DataRoot(tmp_path).sweep("s")
    inside, seen = [], []

    def ask(name: str) -> None:
        with studies.ask_lock(folder):
            inside.append(name)
            seen.append(len(inside))
            time.sleep(0.05)
            inside.remove(name)

    threads = [threading.Thread(target=ask, args=(str(i),)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == [1, 1, 1, 1] and not (folder.root / "ask.lock").exists()


def test_a_services_name_is_kept_and_its_lease_expires(tmp_path):
    name = studies.instance_id(tmp_path / "state")
    assert name.startswith("trainer-") and studies.instance_id(tmp_path / "state") == name
    assert studies.instance_id(tmp_path / "other") != name
    hosts = tmp_path / "sweeps" / ".hosts"
    assert studies.lease_expired(hosts, name, 60)  # never renewed
    studies.renew_lease(hosts, name)
    assert not studies.lease_expired(hosts, name, 60)
    old = time.time() - 120
    os.utime(hosts / name, (old, old))
    assert studies.lease_expired(hosts, name, 60)
