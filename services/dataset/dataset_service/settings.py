"""The dataset service's configuration: one settings class, read from DATASET_* variables."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from dataset_service.fetch import UrlPolicy
from jobkit.settings import ServiceSettings

DEFAULT_PORT = 8001
OFFICIAL_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
OFFICIAL_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"


@dataclass(frozen=True)
class SourceLimits:
    """What obtaining a source may take: archive sizes, and processes to generate a tree."""

    max_download_bytes: int
    max_extract_bytes: int
    processes: int | None = None  # None: one per core
    url_policy: UrlPolicy = field(default_factory=UrlPolicy)  # the hosts a url may reach


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="DATASET_", extra="ignore")
    service_name = "dataset"

    port: int = Field(DEFAULT_PORT, ge=1, le=65535, description="HTTP port.")
    writer_processes: int = Field(
        0, ge=0, description="Processes writing shards in parallel (0: one per CPU core)."
    )
    max_download_bytes: int = Field(2 * 1024**3, gt=0, description="Largest archive accepted.")
    max_extract_bytes: int = Field(
        4 * 1024**3, gt=0, description="Extraction stops past this many uncompressed bytes."
    )
    allowed_url_hosts: str = Field(
        "",
        description="Comma-separated hosts (names or addresses) a url source may reach even "
        "where they resolve to loopback, private or link-local addresses (a lab mirror); "
        "every other non-public address is refused.",
    )
    target_shard_bytes: int = Field(
        8 * 1024**2,
        gt=0,
        description="Shard size aimed at when the count is not given (8 MiB: the real train "
        "split gets 23 shards, enough for every writer process and for parallel reads).",
    )

    @property
    def source_limits(self) -> SourceLimits:
        return SourceLimits(
            self.max_download_bytes,
            self.max_extract_bytes,
            self.writer_processes or None,
            UrlPolicy.of(self.allowed_url_hosts),
        )


@lru_cache
def get_settings() -> Settings:
    return Settings()
