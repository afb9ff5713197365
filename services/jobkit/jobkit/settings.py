"""Settings every job service has. Each service subclasses this once with its own env prefix."""

from __future__ import annotations

from pathlib import Path

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
    cancel_grace_s: float = Field(
        30.0, gt=0, description="Seconds a cancelled worker gets after SIGTERM before SIGKILL."
    )

    @field_validator("api_token", mode="before")
    @classmethod
    def _empty_token_means_none(cls, value):
        # Compose passes ${API_TOKEN:-} through: an empty variable means "no token", not "".
        return None if value is None or (isinstance(value, str) and not value.strip()) else value

    @property
    def state_dir(self) -> Path:
        """Where the job database and job logs live (on the volume, so they survive restarts)."""
        return self.data_root / "state"
