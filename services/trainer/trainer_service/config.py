"""The trainer service's configuration: one settings class, read from TRAINER_* variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from jobkit.settings import ServiceSettings

DEFAULT_PORT = 8002
JOBS_DB_FILE = "trainer-jobs.db"
LOGS_DIR = "trainer-logs"


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TRAINER_", extra="ignore")

    port: int = Field(DEFAULT_PORT, ge=1, le=65535, description="HTTP port.")
    cancel_grace_s: float = Field(
        120.0, gt=0, description="Seconds a stopped run gets to save its checkpoint before SIGKILL."
    )
    keras_backend: Literal["tensorflow", "jax"] = Field(
        "tensorflow", description="Keras backend for the worker (tensorflow or jax)."
    )

    @property
    def jobs_db(self) -> Path:
        """The run database (SQLite) on the volume."""
        return self.state_dir / JOBS_DB_FILE

    @property
    def logs_dir(self) -> Path:
        """One log file per run."""
        return self.state_dir / LOGS_DIR


@lru_cache
def get_settings() -> Settings:
    return Settings()


def settings_env(settings: Settings) -> dict[str, str]:
    """``settings`` as TRAINER_* variables (so a worker's ``get_settings()`` equals it), plus
    ``KERAS_BACKEND`` for the worker's Keras."""
    prefix = Settings.model_config["env_prefix"]
    env = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        env[f"{prefix}{name}".upper()] = str(value)
    env["KERAS_BACKEND"] = settings.keras_backend
    return env
