"""The dataset service's configuration: one settings class, read from DATASET_* variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from jobkit.settings import ServiceSettings

DEFAULT_PORT = 8001
OFFICIAL_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
OFFICIAL_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"
JOBS_DB_FILE = "dataset-jobs.db"
LOGS_DIR = "logs"


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="DATASET_", extra="ignore")

    port: int = Field(DEFAULT_PORT, ge=1, le=65535, description="HTTP port.")
    writer_processes: int = Field(
        0, ge=0, description="Processes writing shards in parallel (0: one per CPU core)."
    )
    max_download_bytes: int = Field(2 * 1024**3, gt=0, description="Largest archive accepted.")
    max_extract_bytes: int = Field(
        4 * 1024**3, gt=0, description="Extraction stops past this many uncompressed bytes."
    )
    target_shard_bytes: int = Field(
        64 * 1024**2, gt=0, description="Shard size aimed at when the count is not given."
    )

    @property
    def jobs_db(self) -> Path:
        """The job database (SQLite) on the volume."""
        return self.state_dir / JOBS_DB_FILE

    @property
    def logs_dir(self) -> Path:
        """One log file per job."""
        return self.state_dir / LOGS_DIR


@lru_cache
def get_settings() -> Settings:
    return Settings()


def settings_env(settings: Settings) -> dict[str, str]:
    """``settings`` as DATASET_* variables, so a worker process's ``get_settings()`` equals it."""
    prefix = Settings.model_config["env_prefix"]
    env = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        env[f"{prefix}{name}".upper()] = str(value)
    return env
