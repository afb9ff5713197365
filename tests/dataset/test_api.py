"""The service over HTTP, with a real job runner: every job runs in a worker process."""

from __future__ import annotations

import shutil
import statistics
import subprocess
import time
import zipfile
from contextlib import contextmanager

import psutil
import pytest
from fastapi.testclient import TestClient

from dataset_service.main import create_app
from dataset_service.models import PrepareRequest
from dataset_service.prepare import prepare
from dataset_service.source import md5_file
from datavolume import DataRoot
from jobkit.store import JobStore
from shard_format.schema import METADATA_FILE
from tests.dataset.support import (
    SMALL,
    SMALL_SPEC,
    assert_records_match_sources,
    is_ready,
    make_settings,
    read_dataset_records,
    serve_directory,
    symlink_info,
    wait_for,
    write_zip,
)

SYNTHETIC = {"kind": "synthetic", **SMALL}
PROBLEM = "application/problem+json"


@contextmanager
def service(settings):
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def client(settings):
    with service(settings) as c:
        yield c


def wait_done(client, job_id, timeout_s=120):
    def done():
        body = client.get(f"/v1/jobs/{job_id}").json()
        return body if body["state"] not in ("queued", "running") else None

    return wait_for(done, timeout_s=timeout_s, interval_s=0.1)


def post(client, body, **headers):
    return client.post("/v1/jobs", json=body, headers=headers)


# ---------------------------------------------------------------------------- basics


def test_health_readiness_and_docs(client, data_root):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert str(data_root) not in ready.text and "data root writable" in ready.json()["detail"]
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/cancel", "/v1/datasets"):
        assert path in paths
    assert client.get("/docs").status_code == 200


def test_bearer_token_protects_all_but_health(data_root):
    with service(make_settings(data_root, api_token="s3cret")) as client:
        assert client.get("/healthz").status_code == 200
        denied = client.get("/v1/datasets")
        assert denied.status_code == 401 and denied.headers["content-type"] == PROBLEM
        assert post(client, {"source": SYNTHETIC}).status_code == 401
        allowed = client.get("/v1/datasets", headers={"Authorization": "Bearer s3cret"})
        assert allowed.status_code == 200 and allowed.json() == {"items": []}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "Not Valid", "source": SYNTHETIC}, "body.name"),
        ({"source": {"kind": "ftp"}}, "body.source"),
        ({"source": {**SYNTHETIC, "classes": 0}}, "body.source.synthetic.classes"),
        ({"source": SYNTHETIC, "shards": {"train": 0}}, "body.shards.train"),
        ({"source": SYNTHETIC, "colour": "red"}, "body.colour"),
        ({"source": {"kind": "url", "md5": "nope"}}, "body.source.url.md5"),
        # strings and booleans are not numbers, nor "yes" a boolean
        ({"source": SYNTHETIC, "shards": {"train": "3"}}, "body.shards.train"),
        ({"source": SYNTHETIC, "skip_bad_images": "yes"}, "body.skip_bad_images"),
        ({"source": {**SYNTHETIC, "classes": True}}, "body.source.synthetic.classes"),
    ],
)
def test_invalid_fields_are_422_problems_naming_the_field(client, body, field):
    response = post(client, body)
    assert response.status_code == 422 and response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["status"] == 422 and field in [e["field"] for e in problem["errors"]]
    assert client.get("/v1/jobs").json()["items"] == []


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_body_that_is_not_json_is_a_415_problem(client, content_type):
    body = '{"name": "x", "source": {"kind": "synthetic"}}'
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post("/v1/jobs", content=body, headers=headers)
    assert response.status_code == 415 and response.headers["content-type"] == PROBLEM
    assert "application/json" in response.json()["detail"]
    assert client.get("/v1/jobs").json()["items"] == []


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("../outside.zip", "outside the data root"),
        ("/etc/passwd", "outside the data root"),
        ("escape/x.zip", "outside the data root"),
        ("raw/missing.zip", "no zip file"),
        ("raw/" + "x" * 256 + ".zip", "too long"),
        ("loop/x.zip", "cannot be resolved"),
        ("loop", "cannot be resolved"),
    ],
)
def test_paths_outside_the_data_root_or_missing_are_422(client, data_root, tmp_path, path, message):
    (data_root / "escape").symlink_to(tmp_path)
    (data_root / "loop").symlink_to("loop")
    response = post(client, {"source": {"kind": "zip", "path": path}})
    assert response.status_code == 422
    (error,) = response.json()["errors"]
    assert error["field"] == "body.source.path" and message in error["message"]
    assert str(tmp_path) not in response.text  # no server path (the data root is under it)
    assert client.get("/v1/jobs").json()["items"] == []


def test_unknown_dataset_and_job_are_404_problems(client):
    for url in ("/v1/datasets/nope", "/v1/jobs/abc123"):
        response = client.get(url)
        assert response.status_code == 404 and response.headers["content-type"] == PROBLEM


# ---------------------------------------------------------------------------- full flow


def test_full_flow_from_a_zip_over_http(client, data_root, pristine, pristine_zip, record_property):
    """Download (MD5), extract, validate, reorganize, write; status polled the whole time."""
    with serve_directory(pristine_zip.parent) as base:
        body = {
            "source": {
                "kind": "url",
                "url": f"{base}/{pristine_zip.name}",
                "md5": md5_file(pristine_zip),
            }
        }
        response = post(client, body)
        assert response.status_code == 202
        job = response.json()
        assert response.headers["location"] == f"/v1/jobs/{job['id']}"
        assert job["state"] in ("queued", "running") and job["kind"] == "prepare"

        latencies, states, phases, retry_after = [], set(), [], set()
        while True:
            start = time.perf_counter()
            polled = client.get(response.headers["location"])
            latencies.append(time.perf_counter() - start)
            assert polled.status_code == 200
            current = polled.json()
            states.add(current["state"])
            if current["phase"] and (not phases or phases[-1] != current["phase"]):
                phases.append(current["phase"])
            if current["state"] not in ("queued", "running"):
                break
            retry_after.add(polled.headers.get("retry-after"))
            time.sleep(0.02)

    assert current["state"] == "succeeded", current["error"]
    assert "running" in states and retry_after == {"2"}
    assert "retry-after" not in polled.headers
    assert phases[-1] == "metadata" and "write" in phases
    assert current["progress"]["percent"] in (None, 100.0)
    assert current["started_at"] and current["finished_at"]
    assert current["result"]["splits"] == {"train": 80, "val": 20, "test": 10}
    assert current["metrics"]["shards_total"] >= 3

    # The figures for the benchmarks (no thresholds here: they would flake).
    p50, p99 = statistics.median(latencies), sorted(latencies)[int(0.99 * (len(latencies) - 1))]
    record_property("status_polls", len(latencies))
    record_property("status_latency_p50_ms", round(p50 * 1000, 2))
    record_property("status_latency_p99_ms", round(p99 * 1000, 2))
    print(
        f"\nstatus polls while running: {len(latencies)}, p50 {p50 * 1000:.1f} ms, "
        f"p99 {p99 * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms"
    )

    (listed,) = client.get("/v1/datasets").json()["items"]
    assert listed["name"] == "tiny-imagenet-200"
    assert {s: v["num_records"] for s, v in listed["splits"].items()} == current["result"]["splits"]
    detail = client.get("/v1/datasets/tiny-imagenet-200").json()
    assert detail["metadata"]["provenance"]["md5"] == md5_file(pristine_zip)
    assert_records_match_sources(read_dataset_records(data_root, "tiny-imagenet-200"), pristine)
    assert "phase write" in client.get(f"/v1/jobs/{job['id']}/logs").text
    assert [j["id"] for j in client.get("/v1/jobs").json()["items"]] == [job["id"]]


# ---------------------------------------------------------------------------- conflicts, cancel

BIG_SYNTHETIC = {**SYNTHETIC, "classes": 10, "train_per_class": 400}


def test_idempotency_busy_resource_and_cancel(client, data_root):
    body = {"name": "slow", "source": BIG_SYNTHETIC}
    first = post(client, body, **{"Idempotency-Key": "k1"})
    assert first.status_code == 202
    job_id = first.json()["id"]

    again = post(client, body, **{"Idempotency-Key": "k1"})
    assert again.status_code == 202 and again.json()["id"] == job_id
    other = post(client, {**body, "shuffle_seed": 3}, **{"Idempotency-Key": "k1"})
    assert other.status_code == 422 and other.json()["job_id"] == job_id
    busy = post(client, body)
    assert busy.status_code == 409 and busy.json()["job_id"] == job_id
    assert job_id in busy.json()["detail"]

    running = wait_for(
        lambda: (
            (j := client.get(f"/v1/jobs/{job_id}").json())["state"] == "running"
            and j["phase"] == "generate"
            and j
        )
    )
    worker = psutil.Process(running["pid"])
    cancel = client.post(f"/v1/jobs/{job_id}/cancel")
    assert cancel.status_code in (200, 202)
    final = wait_done(client, job_id)
    assert final["state"] == "cancelled" and final["error"]["type"] == "cancelled"
    wait_for(lambda: not worker.is_running() or worker.status() == psutil.STATUS_ZOMBIE)
    assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 409
    assert not is_ready(data_root, "slow")
    assert client.get("/v1/datasets").json()["items"] == []
    leftovers = list((data_root / "raw" / "extracted").glob(".slow.partial-*"))
    assert leftovers == []  # the half-generated tree is removed, not left looking complete


# ---------------------------------------------------------------------------- bad inputs


def _bad_inputs(data_root, pristine, pristine_zip):
    """(request body, expected words in the error) for each bad input; builds the files."""
    raw = data_root / "raw"
    raw.mkdir()
    write_zip(raw / "slip.zip", [("tiny-imagenet-200/../../evil.txt", b"x")])
    write_zip(raw / "abs.zip", [("/tmp/evil.txt", b"x")])
    write_zip(raw / "link.zip", [(symlink_info("tiny-imagenet-200/link"), b"/etc/passwd")])
    with zipfile.ZipFile(raw / "bomb.zip", "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("tiny-imagenet-200/big.bin", b"\0" * 3_000_000)

    def broken(name, breakage):
        tree = data_root / "trees" / name
        shutil.copytree(pristine, tree)
        breakage(tree)
        return {"kind": "folder", "path": f"trees/{name}"}

    def append(path, text):
        with open(path, "a") as f:
            f.write(text)

    annotations = "val/val_annotations.txt"
    first_train = sorted((pristine / "train").glob("*/images/*_1.JPEG"))[0].relative_to(pristine)
    cases = {
        "slip": ({"kind": "zip", "path": "raw/slip.zip"}, "escapes the target folder"),
        "absolute": ({"kind": "zip", "path": "raw/abs.zip"}, "is an absolute path"),
        "link": ({"kind": "zip", "path": "raw/link.zip"}, "symbolic link"),
        "bomb": ({"kind": "zip", "path": "raw/bomb.zip"}, "more than the limit"),
        "md5": (
            {"kind": "zip", "path": "raw/good.zip", "md5": "0" * 32},
            "expected 00000000000000000000000000000000",
        ),
        "no-wnids": (
            broken("no-wnids", lambda t: (t / "wnids.txt").unlink()),
            "wnids.txt is missing",
        ),
        "malformed": (
            broken("malformed", lambda t: append(t / annotations, "val_7.JPEG only\n")),
            "line 21 is malformed",
        ),
        "unknown-wnid": (
            broken("unknown-wnid", lambda t: append(t / annotations, "val_99.JPEG\tn00000001\n")),
            "wnid 'n00000001' is not in wnids.txt",
        ),
        "missing-file": (
            broken("missing-file", lambda t: (t / "val" / "images" / "val_4.JPEG").unlink()),
            "val_4.JPEG does not exist",
        ),
        "truncated": (
            broken(
                "truncated",
                lambda t: (t / first_train).write_bytes((t / first_train).read_bytes()[:150]),
            ),
            str(first_train),
        ),
    }
    shutil.copy(pristine_zip, raw / "good.zip")
    # An archive without wnids.txt: the message names the archive, not the extraction folder.
    with zipfile.ZipFile(raw / "no-wnids.zip", "w") as zf:
        for path in sorted(pristine.rglob("*")):
            if path.is_file() and path.name != "wnids.txt":
                zf.write(path, f"tiny-imagenet-200/{path.relative_to(pristine)}")
    cases["no-wnids-zip"] = ({"kind": "zip", "path": "raw/no-wnids.zip"}, "raw/no-wnids.zip: ")
    cases["no-wnids"] = (cases["no-wnids"][0], "trees/no-wnids: wnids.txt is missing")
    return cases


def test_each_bad_input_fails_readably_and_leaves_nothing_ready(data_root, pristine, pristine_zip):
    cases = _bad_inputs(data_root, pristine, pristine_zip)
    settings = make_settings(data_root, max_extract_bytes=1_000_000, max_concurrent_jobs=3)
    with service(settings) as client:
        ids = {}
        for name, (source, _) in cases.items():
            response = post(client, {"name": name, "source": source})
            assert response.status_code == 202, response.json()
            ids[name] = response.json()["id"]
        for name, (_, words) in cases.items():
            job = wait_done(client, ids[name])
            assert job["state"] == "failed", (name, job)
            assert words in job["error"]["message"], (name, job["error"])
            assert "extracted" not in job["error"]["message"], (name, job["error"])
            assert str(data_root) not in job["error"]["message"], (name, job["error"])
            assert job["error"]["type"] in ("invalid_input", "source_error"), job["error"]
            assert not (DataRoot(data_root).dataset(name) / METADATA_FILE).exists(), name
        assert client.get("/v1/datasets").json()["items"] == []
    assert not (data_root / "evil.txt").exists() and not (data_root / "raw" / "evil.txt").exists()


# ---------------------------------------------------------------------------- restart, resume


def test_orphaned_job_is_interrupted_at_startup_and_resumed_by_posting_again(data_root):
    settings = make_settings(data_root)
    request = PrepareRequest(name="resume", source=SYNTHETIC)
    # A previous run wrote everything, then "crashed" before its metadata and two shards.
    prepare(request, settings)
    folder = DataRoot(data_root).dataset("resume")
    (folder / METADATA_FILE).unlink()
    shards = sorted(p for p in folder.iterdir() if ".tfrecord-" in p.name)
    for victim in shards[:2]:
        victim.unlink()
    # Its job record says running, but the worker process is gone.
    store = JobStore(settings.jobs_db)
    old = store.create("prepare", request.model_dump(mode="json"), resource_key="dataset:resume")
    dead = subprocess.Popen(["true"])
    dead.wait()
    store.mark_running(old.id, dead.pid)

    with service(settings) as client:
        interrupted = client.get(f"/v1/jobs/{old.id}").json()
        assert interrupted["state"] == "interrupted"
        assert interrupted["error"]["type"] == "interrupted"
        assert not is_ready(data_root, "resume")

        response = post(client, request.model_dump(mode="json"))
        assert response.status_code == 202
        new_id = response.json()["id"]
        assert new_id != old.id
        job = wait_done(client, new_id)
        assert job["state"] == "succeeded", job["error"]
        assert job["metrics"]["shards_reused"] == job["metrics"]["shards_total"] - 2

    # Job records live on the volume: a restarted service still has both.
    with service(settings) as client:
        states = {j["id"]: j["state"] for j in client.get("/v1/jobs").json()["items"]}
        assert states == {old.id: "interrupted", new_id: "succeeded"}
        (listed,) = client.get("/v1/datasets").json()["items"]
        assert listed["splits"]["train"]["num_records"] == SMALL_SPEC.train_total


def test_the_schema_requires_what_the_service_requires(client):
    """Every source names its kind: ``{"source": {}}`` is invalid in the spec as in the service."""
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    for name in ("UrlSource", "ZipSource", "FolderSource", "SyntheticSource"):
        assert "kind" in schemas[name]["required"]
    response = post(client, {"name": "x", "source": {}})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"].startswith("body.source")


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8002/openapi.json", "http://localhost:8002/v1/runs",
     "http://169.254.169.254/latest/meta-data/", "http://[::1]:8001/v1/jobs"],
)  # fmt: skip
def test_a_url_source_may_not_reach_the_services_beside_it(data_root, url):
    with service(make_settings(data_root, allowed_url_hosts="")) as client:
        response = post(client, {"source": {"kind": "url", "url": url}})
        assert response.status_code == 422
        (error,) = response.json()["errors"]
        assert error["field"] == "body.source.url"
        assert error["message"].startswith("refused: address not allowed")
        assert client.get("/v1/jobs").json()["items"] == []


def test_a_synthetic_request_is_bounded_in_images_and_by_the_free_space(client, monkeypatch):
    huge = {"kind": "synthetic", "classes": 1000, "train_per_class": 5000}
    response = post(client, {"source": huge})
    assert response.status_code == 422 and "at most 1,200,000" in response.text
    monkeypatch.setattr(DataRoot, "free_bytes", lambda self: 100 * 2**20)
    big = {"kind": "synthetic", "classes": 200, "train_per_class": 500}  # 120,000 images
    response = post(client, {"source": big})
    assert response.status_code == 507 and "MiB free" in response.json()["detail"]
    small = {"kind": "synthetic", "classes": 2, "train_per_class": 4, "val_per_class": 1,
             "test_images": 1}  # fmt: skip
    assert post(client, {"source": small}).status_code == 202
