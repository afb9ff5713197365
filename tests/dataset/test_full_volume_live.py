"""The dataset service as compose runs it (a uvicorn process), on a real small volume (a tmpfs):
a prepare of a new zip whose volume fills while it writes ends ``failed``/``out_of_space`` in its
status within 10 s while the volume stays full, the dataset's earlier version untouched and still
served; once space is freed, the same request posted again finishes."""

from __future__ import annotations

import shutil
import time

import httpx
import pytest

from dataset_service.synthetic import SyntheticSpec, generate, pack_zip
from datavolume import DataRoot
from scripts.run_local import compose_config, start_service, stop_service
from tests.dataset.support import SMALL
from tests.utils.full_volume import Filler, MiB, digests, free_bytes, tmpfs

TOKEN = "full-volume-token"
NAME = "tiny"
FIRST, SECOND = "uploads/first.zip", "uploads/second.zip"


def wait_for(predicate, timeout: float, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"condition not met within {timeout} s"
        time.sleep(interval)
    return value


@pytest.mark.slow
def test_a_prepare_whose_volume_fills_ends_out_of_space_and_keeps_the_earlier_version(
    tmp_path, pristine_zip, monkeypatch
):
    # Other images than the first zip's: the second prepare writes every shard anew.
    other = generate(tmp_path / "other", SyntheticSpec(**{**SMALL, "seed": 1}), processes=1)
    with tmpfs(tmp_path / "volume", 48 * MiB) as root:
        (root / FIRST).parent.mkdir()
        shutil.copyfile(pristine_zip, root / FIRST)
        pack_zip(other, root / SECOND)
        monkeypatch.setenv("DATASET_MIN_FREE_BYTES", str(4 * MiB))
        service = start_service("dataset", compose_config(), root, TOKEN, tmp_path / "logs")
        client = httpx.Client(base_url=service.url, headers=service.headers, timeout=30)

        def prepare(zip_path: str) -> str:
            body = {"name": NAME, "source": {"kind": "zip", "path": zip_path}}
            answer = client.post("/v1/jobs", json=body)
            assert answer.status_code == 202, answer.text
            return answer.json()["id"]

        def job(job_id: str) -> dict:
            return client.get(f"/v1/jobs/{job_id}").json()

        def ended(job_id: str, timeout: float) -> dict:
            return wait_for(
                lambda: (j := job(job_id))["state"] not in ("queued", "running") and j, timeout
            )

        try:
            assert ended(prepare(FIRST), timeout=120)["state"] == "succeeded"
            link = DataRoot(root).dataset(NAME)
            version = link.resolve()
            kept = digests(version)
            zips = digests(root / "uploads")
            assert "shard_format.json" in kept

            second = prepare(SECOND)
            wait_for(lambda: job(second)["state"] == "running", timeout=60)
            with Filler(root / "filler"):  # the volume fills under the prepare, and stays full
                full_at = time.monotonic()
                failed = ended(second, timeout=10)
                assert time.monotonic() - full_at < 10
                assert failed["state"] == "failed", failed
                assert failed["error"]["type"] == "out_of_space", failed["error"]
                assert failed["phase"] == "write"
                assert failed["unrecorded_end"] is None  # recorded, not only shown
                assert free_bytes(root) == 0
                # Nothing else is lost: the earlier version is untouched and still served.
                assert link.resolve() == version and digests(version) == kept
                assert digests(root / "uploads") == zips
                assert not DataRoot(root).staging(NAME).exists()  # no half-written version
                listed = client.get("/v1/jobs", params={"state": "failed"}).json()["items"]
                assert [j["id"] for j in listed] == [second]
            (root / "filler").unlink()  # space is freed

            again = ended(prepare(SECOND), timeout=120)
            assert again["state"] == "succeeded", again["error"]
            assert link.resolve() != version and (link / "shard_format.json").is_file()
        finally:
            client.close()
            stop_service(service)
