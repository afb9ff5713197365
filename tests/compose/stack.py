"""Drive a real ``docker compose`` stack of this project: the CPU compose files, its own project
name and free loopback ports, so it never touches a stack a user already runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field

import httpx

from scripts.run_local import free_port
from tests.conftest import REPO_ROOT
from tin_client import DatasetClient, TrainerClient

CPU_FILES = ["docker-compose.yml", "docker/compose.cpu.yml", "tests/compose/fast-xla.yml"]
SERVICES = ("dataset", "trainer", "tensorboard")


def engine_answers() -> bool:
    """True when a Docker engine and the compose plugin answer here."""
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
    if probe.returncode != 0:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0


@dataclass
class Stack:
    project: str
    env: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ports = {name: free_port() for name in SERVICES}
        self.env.update(
            {
                "DATASET_PUBLISHED_PORT": str(self.ports["dataset"]),
                "TRAINER_PUBLISHED_PORT": str(self.ports["trainer"]),
                "TENSORBOARD_PUBLISHED_PORT": str(self.ports["tensorboard"]),
            }
        )

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def compose(self, *args: str, timeout: float = 900, check: bool = True, **env: str):
        """``docker compose -p PROJECT -f ... ARGS`` in the repository root; returns the result."""
        files = [arg for f in CPU_FILES for arg in ("-f", f)]
        result = subprocess.run(
            ["docker", "compose", "-p", self.project, *files, *args],
            cwd=REPO_ROOT,
            env={**os.environ, **self.env, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"docker compose {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
            )
        return result

    def timed(self, what: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
        start = time.monotonic()
        result = self.compose(*args, **kwargs)
        self.timings[what] = round(time.monotonic() - start, 1)
        return result

    def up(self, **env: str) -> None:
        """``up -d --wait``: returns once every service's healthcheck passes."""
        self.timed("up_to_healthy_s", "up", "-d", "--wait", "--wait-timeout", "300", **env)

    def exec(self, service: str, *command: str, user: str | None = None) -> str:
        extra = ["--user", user] if user else []
        return self.compose("exec", "-T", *extra, service, *command).stdout

    def containers(self) -> list[dict]:
        out = self.compose("ps", "--all", "--format", "json").stdout
        # Compose prints one JSON object per line.
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def logs(self) -> str:
        return self.compose("logs", "--no-color", "--tail", "200", check=False).stdout

    def dataset(self, token: str | None = None) -> DatasetClient:
        """The project's client of this stack's dataset service."""
        return DatasetClient(self.url("dataset"), token or "")

    def trainer(self, token: str | None = None) -> TrainerClient:
        return TrainerClient(self.url("trainer"), token or "")

    def client(self, service: str, token: str | None = None) -> httpx.Client:
        """A plain HTTP client (for what the project's client does not cover)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url(service), headers=headers, timeout=30)
