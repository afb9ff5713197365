"""Settings every job service has. Each service subclasses this once with its own env prefix."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import ClassVar

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from datavolume.layout import DataRoot

DEFAULT_DATA_ROOT = Path("/data")
#: The token variable both services (and the ``tin`` client) read when their own is not set.
SHARED_TOKEN_ENV = "API_TOKEN"
#: What a shutdown needs after the workers' grace: record their ends, close the store, exit.
STOP_MARGIN_S = 10.0


class ServiceSettings(BaseSettings):
    """Fields shared by both services.

    Values come from the environment (see each subclass's env prefix).
    """

    model_config = SettingsConfigDict(extra="ignore")

    data_root: Path = Field(
        DEFAULT_DATA_ROOT, description="Shared volume: datasets, runs and the job database."
    )
    host: str = Field(
        "127.0.0.1", description="Interface uvicorn binds to (0.0.0.0 in containers)."
    )
    port: int = Field(8000, ge=1, le=65535, description="HTTP port.")
    api_token: SecretStr | None = Field(
        None,
        description="When set, every endpoint but health needs 'Authorization: Bearer <token>'. "
        "Read from <PREFIX>API_TOKEN, else from API_TOKEN (shared by both services and tin).",
    )
    published_on: str | None = Field(
        None,
        description="The address clients reach the port on, when it differs from host (compose "
        "publishes the container's port on this host address).",
    )
    allow_no_token: bool = Field(
        False,
        description="Serve without a token on an address other machines can reach (refused "
        "otherwise: the service will not start).",
    )
    max_concurrent_jobs: int | None = Field(
        None,
        ge=1,
        description="Jobs running at once; the rest queue. Unset: one per device slot "
        "(device_slots()), or one for a service without slots.",
    )
    state_dir: Path | None = Field(
        None,
        description="The folder of this service's job database and job logs (default: the "
        "volume's state/). Two services of one kind sharing a volume each need their own.",
    )
    max_body_bytes: int = Field(
        64 * 1024, ge=1024, description="Largest request body accepted (413 beyond it)."
    )
    max_queued_jobs: int = Field(
        100, ge=1, description="Jobs that may wait in the queue; more are refused (429)."
    )
    min_free_bytes: int = Field(
        64 * 2**20,
        ge=0,
        description="Free space the volume must keep: below it /readyz is not ready and new "
        "jobs are refused (507); the job store and logs need room to record every end.",
    )
    worker_nice: int = Field(
        10, ge=0, le=19, description="Niceness of job workers: the API stays responsive under load."
    )
    cancel_grace_s: float = Field(
        30.0, gt=0, description="Seconds a cancelled worker gets after SIGTERM before SIGKILL."
    )
    stop_grace_s: float | None = Field(
        None,
        gt=0,
        description="Seconds the service itself gets between SIGTERM and SIGKILL (the "
        "container's stop grace period; compose passes its own). A shutdown stops the workers "
        "within cancel_grace_s, so it must be at least STOP_MARGIN_S shorter.",
    )

    @model_validator(mode="before")
    @classmethod
    def _shared_token(cls, data):
        """``API_TOKEN`` stands in for the prefixed variable when that one is unset or empty."""
        shared = os.environ.get(SHARED_TOKEN_ENV, "").strip()
        if isinstance(data, dict) and shared and not str(data.get("api_token") or "").strip():
            return {**data, "api_token": shared}
        return data

    @model_validator(mode="after")
    def _no_open_service_without_a_token(self):
        reachable = self.published_on or self.host
        if self.api_token is None and not self.allow_no_token and not is_loopback(reachable):
            prefix = self.model_config.get("env_prefix", "")
            raise ValueError(
                f"the service would answer on {reachable} without a token: set API_TOKEN (or "
                f"{prefix}API_TOKEN), or {prefix}ALLOW_NO_TOKEN=true to serve it open"
            )
        return self

    @model_validator(mode="after")
    def _cancel_grace_fits_in_the_stop_grace(self):
        if (
            self.stop_grace_s is not None
            and self.cancel_grace_s + STOP_MARGIN_S > self.stop_grace_s
        ):
            raise ValueError(
                f"cancel_grace_s ({self.cancel_grace_s:g} s) must be at least {STOP_MARGIN_S:g} s "
                f"shorter than stop_grace_s ({self.stop_grace_s:g} s), the container's stop grace "
                "period: a worker stopped at shutdown would be killed before it saves. Raise "
                "the stop grace (e.g. TRAINER_STOP_GRACE_S in compose) or lower the cancel grace."
            )
        return self

    @field_validator("api_token", mode="before")
    @classmethod
    def _empty_token_means_none(cls, value):
        # Compose passes ${API_TOKEN:-} through: an empty variable means "no token", not "".
        return None if value is None or (isinstance(value, str) and not value.strip()) else value

    #: Names this service's job database and log folder on the volume.
    service_name: ClassVar[str] = "service"

    @property
    def volume(self) -> DataRoot:
        """The shared volume at ``data_root`` (its layout: :mod:`datavolume.layout`)."""
        return DataRoot(self.data_root)

    @property
    def state_folder(self) -> Path:
        """Where this service keeps its state: ``state_dir``, or the volume's ``state/``."""
        return self.state_dir if self.state_dir is not None else self.volume.state

    @property
    def jobs_db(self) -> Path:
        """The service's job database (SQLite) on the volume, so it survives restarts."""
        return self.volume.jobs_db(self.service_name, self.state_folder)

    @property
    def logs_dir(self) -> Path:
        """One log file per job."""
        return self.volume.job_logs(self.service_name, self.state_folder)

    def device_slots(self) -> list[str] | None:
        """The devices this service's jobs run on, each held by one job at a time (None: the
        service has none; its jobs are only counted). A service with devices overrides it."""
        return None

    def slot_env(self, slots) -> dict[str, str]:
        """What a worker holding ``slots`` has in its environment (e.g. the GPUs it sees)."""
        return {}

    def concurrent_jobs(self) -> int:
        """Jobs running at once: ``max_concurrent_jobs``, else one per slot (or one)."""
        slots = self.device_slots()
        return self.max_concurrent_jobs or (len(slots) if slots else 1)

    def worker_env(self) -> dict[str, str]:
        """These settings as environment variables, so a worker process reads the same values."""
        prefix = self.model_config.get("env_prefix", "")
        env = {}
        for name, value in self.model_dump().items():
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            env[f"{prefix}{name}".upper()] = str(value)
        return env


def is_loopback(address: str) -> bool:
    """Whether only this machine reaches ``address`` (``localhost``, 127.0.0.0/8, ``::1``)."""
    if address.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False
