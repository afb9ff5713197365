"""The trainer service's configuration: one settings class, read from TRAINER_* variables."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from jobkit.settings import ServiceSettings
from trainer_service import TENSORFLOW_ENV

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

    predict_max_images: int = Field(
        16, ge=1, le=256, description="Images one predict request may send (422 beyond it)."
    )
    predict_max_bytes: int = Field(
        16 * 2**20,
        ge=64 * 1024,
        le=256 * 2**20,
        description="Largest predict request body, all images together (413 beyond it).",
    )
    predict_keras_backend: Literal["tensorflow", "jax"] = Field(
        "tensorflow",
        description="Keras backend of the predict process, whichever trained the run (a .keras "
        "file loads on either); on a CPU, TensorFlow answers a one-off request sooner than JAX, "
        "which compiles the model first (BENCHMARKS.md, section 7).",
    )
    predict_threads: int = Field(
        2, ge=1, le=64, description="CPU threads of the predict process (it never uses a GPU)."
    )
    predict_nice: int = Field(
        15, ge=0, le=19, description="Niceness of the predict process: training goes first."
    )
    predict_timeout_s: float = Field(
        120.0, gt=0, le=3600, description="A predict process that runs longer is stopped (503)."
    )
    predict_wait_s: float = Field(
        30.0, ge=0, le=600, description="How long a request waits for the predict slot (429)."
    )

    def worker_env(self) -> dict[str, str]:
        """The TRAINER_* variables, ``KERAS_BACKEND`` for the worker's Keras, and
        :data:`trainer_service.TENSORFLOW_ENV`."""
        return {**super().worker_env(), **TENSORFLOW_ENV, "KERAS_BACKEND": self.keras_backend}


@lru_cache
def get_settings() -> Settings:
    return Settings()
