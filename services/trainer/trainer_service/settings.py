"""The trainer service's configuration: one settings class, read from TRAINER_* variables."""

from __future__ import annotations

import os
import subprocess
from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr
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

    # -- devices: one run (or sweep trial) per GPU ------------------------------------------
    devices: str = Field(
        "auto",
        pattern=r"^(auto|cpu|\d{1,3}(,\d{1,3}){0,63})$",
        description="The GPUs runs train on, one run per GPU at a time (a run asking for N "
        "takes N): auto (every GPU CUDA_VISIBLE_DEVICES or nvidia-smi shows; none: the CPU, "
        "max_concurrent_jobs runs at once), cpu (the CPU even on a GPU host), or indices like "
        "0,1,3.",
    )
    gpu_memory_fraction: float = Field(
        0.75,
        gt=0,
        le=1,
        description="The share of its GPU's memory a run's JAX preallocates (each run sees only "
        "its own GPUs).",
    )

    # -- sweeps ---------------------------------------------------------------------------------
    sweep_storage: SecretStr | None = Field(
        None,
        description="A database URL for the sweeps' Optuna studies (e.g. postgresql://...); "
        "unset: each sweep's journal file on the shared volume.",
    )
    sweep_poll_s: float = Field(
        1.0, gt=0, le=60, description="How often the service looks after its sweeps' trials."
    )
    sweep_verdict_wait_s: float = Field(
        60.0,
        ge=0,
        le=3600,
        description="How long a trial waits after each epoch for its sweep's verdict (prune or "
        "go on) before it goes on.",
    )
    sweep_host_grace_s: float = Field(
        300.0,
        ge=5,
        le=86_400,
        description="A trainer service that has not renewed its lease for this long is taken "
        "as gone: its running trials fail and are replaced.",
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

    def device_slots(self) -> list[str]:
        """``gpu<i>`` for each GPU of :attr:`devices`; without GPUs, ``cpu<i>`` for each run
        that may train at once (``max_concurrent_jobs``, 1 by default)."""
        if self.devices == "cpu":
            gpus = []
        elif self.devices == "auto":
            gpus = visible_gpus()
        else:
            gpus = self.devices.split(",")
        cpus = self.max_concurrent_jobs or 1
        return [f"gpu{index}" for index in gpus] or [f"cpu{i}" for i in range(cpus)]

    def slot_env(self, slots) -> dict[str, str]:
        """A worker sees only its own GPUs (JAX preallocates ``gpu_memory_fraction`` of them);
        on CPU slots, none."""
        gpus = [slot.removeprefix("gpu") for slot in slots if slot.startswith("gpu")]
        if not gpus:
            return {"CUDA_VISIBLE_DEVICES": "", "JAX_PLATFORMS": "cpu"}
        return {
            "CUDA_VISIBLE_DEVICES": ",".join(gpus),
            "XLA_PYTHON_CLIENT_MEM_FRACTION": f"{self.gpu_memory_fraction:g}",
        }


@lru_cache
def visible_gpus() -> list[str]:
    """The GPU indices this host shows: ``CUDA_VISIBLE_DEVICES`` when set, else what
    ``nvidia-smi`` lists (no CUDA library is loaded: the API process never loads one)."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g.strip() for g in listed.split(",") if g.strip().isdigit()]
    try:
        found = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                               capture_output=True, text=True, timeout=30)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return []
    lines = found.stdout.split() if found.returncode == 0 else []
    return [line for line in lines if line.isdigit()]


@lru_cache
def get_settings() -> Settings:
    return Settings()
