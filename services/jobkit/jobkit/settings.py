"""Settings every job service has. Each service subclasses this once with its own env prefix."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATA_ROOT = Path("/data")


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
        description="When set, every endpoint but health needs 'Authorization: Bearer <token>'.",
    )
    max_concurrent_jobs: int = Field(1, ge=1, description="Jobs running at once; the rest queue.")
    worker_nice: int = Field(
        10, ge=0, le=19, description="Niceness of job workers: the API stays responsive under load."
    )
    cancel_grace_s: float = Field(
        30.0, gt=0, description="Seconds a cancelled worker gets after SIGTERM before SIGKILL."
    )

    @field_validator("api_token", mode="before")
    @classmethod
    def _empty_token_means_none(cls, value):
        # Compose passes ${API_TOKEN:-} through: an empty variable means "no token", not "".
        return None if value is None or (isinstance(value, str) and not value.strip()) else value

    #: Names this service's job database and log folder under ``state_dir``.
    service_name: ClassVar[str] = "service"

    @property
    def state_dir(self) -> Path:
        """Where the job database and job logs live (on the volume, so they survive restarts)."""
        return self.data_root / "state"

    @property
    def jobs_db(self) -> Path:
        """The service's job database (SQLite) on the volume."""
        return self.state_dir / f"{self.service_name}-jobs.db"

    @property
    def logs_dir(self) -> Path:
        """One log file per job."""
        return self.state_dir / f"{self.service_name}-logs"

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
