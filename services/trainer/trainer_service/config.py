"""The trainer service's configuration: one settings class, read from TRAINER_* variables."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from jobkit.settings import ServiceSettings

DEFAULT_PORT = 8002


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TRAINER_", extra="ignore")

    port: int = Field(DEFAULT_PORT, ge=1, le=65535, description="HTTP port.")
    cancel_grace_s: float = Field(
        120.0, gt=0, description="Seconds a stopped run gets to save its checkpoint before SIGKILL."
    )
    keras_backend: str = Field(
        "tensorflow", description="Keras backend for the worker (tensorflow or jax)."
    )


@lru_cache
def get_settings() -> Settings:
    return Settings()
