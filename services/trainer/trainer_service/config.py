"""The trainer service's configuration: one settings class, read from TRAINER_* variables."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from jobkit.settings import ServiceSettings

DEFAULT_PORT = 8002


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TRAINER_", extra="ignore")
    service_name = "trainer"

    port: int = Field(DEFAULT_PORT, ge=1, le=65535, description="HTTP port.")
    cancel_grace_s: float = Field(
        120.0, gt=0, description="Seconds a stopped run gets to save its checkpoint before SIGKILL."
    )
    keras_backend: Literal["tensorflow", "jax"] = Field(
        "tensorflow", description="Keras backend for the worker (tensorflow or jax)."
    )

    def worker_env(self) -> dict[str, str]:
        """The TRAINER_* variables, plus ``KERAS_BACKEND`` for the worker's Keras."""
        return {**super().worker_env(), "KERAS_BACKEND": self.keras_backend}


@lru_cache
def get_settings() -> Settings:
    return Settings()
