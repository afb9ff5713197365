"""Both services as real uvicorn processes (with a token) on a shared temporary data root, once
for the client tests, plus a small synthetic dataset prepared on them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from scripts.run_local import Service, running_services
from tin_client import DatasetClient, TrainerClient

TOKEN = "client-test-token"
DATASET = "syn-client"
SYNTHETIC = {"kind": "synthetic", "classes": 3, "train_per_class": 16, "val_per_class": 4,
             "test_images": 4, "seed": 5}  # fmt: skip
#: A run small enough for a CPU test: width 8, one bottleneck.
TINY_RUN = {"width": 8, "levels": [1], "batch_size": 8, "export_savedmodel": False,
            "export_onnx": False}  # fmt: skip


@dataclass
class Live:
    data_root: Path
    services: dict[str, Service]
    token: str = TOKEN

    def dataset(self, **kwargs) -> DatasetClient:
        return DatasetClient(self.services["dataset"].url, self.token, **kwargs)

    def trainer(self, **kwargs) -> TrainerClient:
        return TrainerClient(self.services["trainer"].url, self.token, **kwargs)

    def cli_env(self) -> dict[str, str]:
        """What ``tin`` reads: the two URLs and the token."""
        return {
            "TIN_DATASET_URL": self.services["dataset"].url,
            "TIN_TRAINER_URL": self.services["trainer"].url,
            "API_TOKEN": self.token,
        }


@pytest.fixture(scope="session")
def live(tmp_path_factory) -> Live:
    root = tmp_path_factory.mktemp("client-root")
    with running_services(root, TOKEN) as services:
        live = Live(root, services)
        with live.dataset() as dataset:
            job = dataset.wait(dataset.prepare(DATASET, SYNTHETIC)["id"], timeout=300)
            assert job["state"] == "succeeded", job
        yield live
