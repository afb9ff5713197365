"""The trainer's settings: one run per GPU (each worker sees only its own), CPU slots, and the
state folder a second service on the same volume keeps."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from trainer_service import settings as trainer_settings
from trainer_service.settings import Settings


@pytest.fixture(autouse=True)
def _fresh_detection():
    trainer_settings.visible_gpus.cache_clear()
    yield
    trainer_settings.visible_gpus.cache_clear()


def test_one_slot_per_gpu_and_each_worker_sees_only_its_own(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,3")
    settings = Settings(data_root=tmp_path)
    assert settings.device_slots() == ["gpu0", "gpu1", "gpu3"]
    assert settings.concurrent_jobs() == 3  # one run per GPU
    assert settings.slot_env(["gpu1", "gpu3"]) == {
        "CUDA_VISIBLE_DEVICES": "1,3",
        "XLA_PYTHON_CLIENT_MEM_FRACTION": "0.75",
    }
    chosen = Settings(data_root=tmp_path, devices="2,0", gpu_memory_fraction=0.5)
    assert chosen.device_slots() == ["gpu2", "gpu0"]
    assert chosen.slot_env(["gpu2"])["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.5"
    capped = Settings(data_root=tmp_path, max_concurrent_jobs=2)
    assert capped.concurrent_jobs() == 2 and len(capped.device_slots()) == 3


def test_without_gpus_the_cpu_slots_are_the_runs_at_once(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert Settings(data_root=tmp_path).device_slots() == ["cpu0"]
    two = Settings(data_root=tmp_path, max_concurrent_jobs=2)
    assert two.device_slots() == ["cpu0", "cpu1"] and two.concurrent_jobs() == 2
    assert two.slot_env(["cpu1"]) == {"CUDA_VISIBLE_DEVICES": "", "JAX_PLATFORMS": "cpu"}
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert Settings(data_root=tmp_path, devices="cpu").device_slots() == ["cpu0"]


@pytest.mark.parametrize("devices", ["gpu", "0,", "-1", "0;1", ""])
def test_devices_are_checked(tmp_path, devices):
    with pytest.raises(ValidationError, match="devices"):
        Settings(data_root=tmp_path, devices=devices)


def test_a_state_folder_of_its_own(tmp_path):
    default = Settings(data_root=tmp_path)
    assert default.jobs_db == tmp_path / "state" / "trainer-jobs.db"
    own = Settings(data_root=tmp_path, state_dir=tmp_path / "state" / "host-b")
    assert own.jobs_db == tmp_path / "state" / "host-b" / "trainer-jobs.db"
    assert own.logs_dir == tmp_path / "state" / "host-b" / "trainer-logs"
