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
    predict_threads: int = Field(
        2,
        ge=1,
        le=64,
        description="CPU threads of the predictor process (ONNX Runtime's, and TensorFlow's in "
        "the export a checkpoint's first use makes); it never uses a GPU.",
    )
    predict_nice: int = Field(
        15,
        ge=0,
        le=19,
        description="Niceness of the predictor process and its exports: training goes first.",
    )
    predict_timeout_s: float = Field(
        120.0,
        gt=0,
        le=3600,
        description="Longest a predict request may take, waiting for a checkpoint's export on "
        "its first use included (503 beyond it; the export goes on for the next request).",
    )
    predict_max_queue: int = Field(
        16,
        ge=1,
        le=1024,
        description="Predict requests in the predictor at once (queued or running); one more "
        "is refused at once (429 with Retry-After).",
    )
    predict_max_batch: int = Field(
        32,
        ge=1,
        le=1024,
        description="Most images in one batch: requests for the same model that arrive "
        "together are run together, up to this many images.",
    )
    predict_batch_wait_ms: float = Field(
        2.0,
        ge=0,
        le=1000,
        description="How long a batch's first request waits for requests on their way (their "
        "images being decoded) to join it (ms); a request alone never waits.",
    )
    predict_max_models: int = Field(
        4,
        ge=1,
        le=64,
        description="Models the predictor keeps loaded (one per run and checkpoint file); the "
        "least recently used is dropped first.",
    )
    predict_idle_s: float = Field(
        600.0,
        ge=1,
        le=86400,
        description="A loaded model unused this long is freed.",
    )

    def worker_env(self) -> dict[str, str]:
        """The TRAINER_* variables, ``KERAS_BACKEND`` for the worker's Keras, and
        :data:`trainer_service.TENSORFLOW_ENV`."""
        return {**super().worker_env(), **TENSORFLOW_ENV, "KERAS_BACKEND": self.keras_backend}


@lru_cache
def get_settings() -> Settings:
    return Settings()
