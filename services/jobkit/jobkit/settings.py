"""Settings every job service has. Each service subclasses this once with its own env prefix."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATA_ROOT = Path("/data")


class ServiceSettings(BaseSettings):
    """Fields shared by both services; values come from the environment (see each subclass prefix)."""

    model_config = SettingsConfigDict(extra="ignore")

    data_root: Path = Field(
        DEFAULT_DATA_ROOT, description="Shared volume: datasets, runs and the job database."
    )
    host: str = Field("127.0.0.1", description="Interface uvicorn binds to (0.0.0.0 in containers).")
    port: int = Field(8000, ge=1, le=65535, description="HTTP port.")
    api_token: SecretStr | None = Field(
        None, description="When set, every endpoint but health needs 'Authorization: Bearer <token>'."
    )
    max_concurrent_jobs: int = Field(1, ge=1, description="Jobs running at once; the rest queue.")
    cancel_grace_s: float = Field(
        30.0, gt=0, description="Seconds a cancelled worker gets after SIGTERM before SIGKILL."
    )

    @property
    def state_dir(self) -> Path:
        """Where the job database and job logs live (on the volume, so they survive restarts)."""
        return self.data_root / "state"
