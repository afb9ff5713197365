"""The route helpers, wired the way a service wires them."""

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field

from jobkit.api import IdempotencyKey, accepted, create_job, health_router, make_jobs_router
from jobkit.problems import PROBLEM_JSON, install_problem_handlers, problem_type
from jobkit.runner import JobRunner
from jobkit.store import JobStore
from tests.jobkit.jobkit_helpers import REPO_ROOT, TARGETS, wait_ready


class Config(BaseModel):
    batch_size: int = Field(32, gt=0)


class PrepareRequest(BaseModel):
    name: str
    count: int = 3
    kind: str = "succeed"
    config: Config = Config()


class Service:
    def __init__(self, tmp_path: Path) -> None:
        self.ready = (True, "ok")
        self.store = JobStore(tmp_path / "state" / "jobs.db")
        self.runner = JobRunner(
            self.store,
            targets=TARGETS,
            log_dir=tmp_path / "state" / "logs",
            cancel_grace_s=2,
            env={"PYTHONPATH": str(REPO_ROOT)},
        )
        app = FastAPI()
        install_problem_handlers(app)
        app.include_router(health_router(lambda: self.ready))
        app.include_router(make_jobs_router("jobs", lambda: self.store, lambda: self.runner))

        @app.post("/v1/datasets", status_code=202)
        def prepare(body: PrepareRequest, idempotency_key: IdempotencyKey = None):
            job = create_job(
                self.store,
                self.runner,
                body.kind,
                body,
                idempotency_key=idempotency_key,
                resource_key=f"dataset:{body.name}",
            )
            return accepted(job, f"/v1/jobs/{job.id}")

        self.client = TestClient(app)


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Service]:
    service = Service(tmp_path)
    yield service
    service.runner.stop()


def problem(resp, status: int) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == PROBLEM_JSON
    return resp.json()


def test_create_returns_202_with_location(svc: Service) -> None:
    resp = svc.client.post("/v1/datasets", json={"name": "tiny"})
    assert resp.status_code == 202
    job = resp.json()
    assert resp.headers["location"] == f"/v1/jobs/{job['id']}"
    assert resp.headers["retry-after"] == "2"
    assert job["state"] == "queued" and job["queue_position"] == 1
    assert job["request"] == {
        "name": "tiny",
        "count": 3,
        "kind": "succeed",
        "config": {"batch_size": 32},
    }
    got = svc.client.get(resp.headers["location"])
    assert got.status_code == 200 and got.json() == job
    assert got.headers["retry-after"] == "2"


def test_idempotency_key(svc: Service) -> None:
    headers = {"Idempotency-Key": "abc"}
    first = svc.client.post("/v1/datasets", json={"name": "tiny"}, headers=headers)
    again = svc.client.post("/v1/datasets", json={"name": "tiny"}, headers=headers)
    assert again.status_code == 202 and again.json()["id"] == first.json()["id"]
    body = problem(
        svc.client.post("/v1/datasets", json={"name": "tiny", "count": 9}, headers=headers), 422
    )
    assert body["type"] == problem_type("idempotency-conflict")
    assert body["job_id"] == first.json()["id"]
    assert len(svc.client.get("/v1/jobs").json()["items"]) == 1


def test_resource_busy_409(svc: Service) -> None:
    first = svc.client.post("/v1/datasets", json={"name": "tiny"}).json()
    body = problem(svc.client.post("/v1/datasets", json={"name": "tiny", "count": 5}), 409)
    assert body["type"] == problem_type("resource-busy")
    assert body["job_id"] == first["id"]
    assert first["id"] in body["detail"]
    assert svc.client.post("/v1/datasets", json={"name": "other"}).status_code == 202


def test_validation_422_names_field(svc: Service) -> None:
    body = problem(
        svc.client.post("/v1/datasets", json={"name": "x", "config": {"batch_size": 0}}), 422
    )
    assert [e["field"] for e in body["errors"]] == ["body.config.batch_size"]
    body = problem(
        svc.client.post("/v1/datasets", json={"name": "x"}, headers={"Idempotency-Key": ""}), 422
    )
    assert body["errors"][0]["field"] == "header.Idempotency-Key"


def test_unknown_job_404(svc: Service) -> None:
    for path in ("/v1/jobs/0123abcd", "/v1/jobs/0123abcd/logs"):
        body = problem(svc.client.get(path), 404)
        assert body["job_id"] == "0123abcd" and body["instance"] == path
    problem(svc.client.post("/v1/jobs/0123abcd/cancel"), 404)
    problem(svc.client.get("/v1/jobs/not-an-id!"), 422)


def test_list_newest_first_with_filters(svc: Service) -> None:
    a = svc.client.post("/v1/datasets", json={"name": "a"}).json()
    b = svc.client.post("/v1/datasets", json={"name": "b"}).json()
    items = svc.client.get("/v1/jobs").json()["items"]
    assert [j["id"] for j in items] == [b["id"], a["id"]]
    assert [j["queue_position"] for j in items] == [2, 1]
    assert svc.client.get("/v1/jobs", params={"limit": 1}).json()["items"][0]["id"] == b["id"]
    assert svc.client.get("/v1/jobs", params={"state": "running"}).json() == {"items": []}
    problem(svc.client.get("/v1/jobs", params={"state": "bogus"}), 422)
    problem(svc.client.get("/v1/jobs", params={"limit": 0}), 422)


def test_cancel_queued_then_409(svc: Service) -> None:
    job = svc.client.post("/v1/datasets", json={"name": "tiny"}).json()
    resp = svc.client.post(f"/v1/jobs/{job['id']}/cancel")
    assert resp.status_code == 200
    assert resp.json()["state"] == "cancelled"
    assert "retry-after" not in resp.headers
    body = problem(svc.client.post(f"/v1/jobs/{job['id']}/cancel"), 409)
    assert body["job_id"] == job["id"] and body["state"] == "cancelled"
    # The resource is free again.
    assert svc.client.post("/v1/datasets", json={"name": "tiny"}).status_code == 202


def test_health(svc: Service) -> None:
    assert svc.client.get("/healthz").json() == {"status": "ok"}
    assert svc.client.get("/readyz").json() == {"status": "ready", "detail": "ok"}
    svc.ready = (False, "data root /data is not writable")
    body = problem(svc.client.get("/readyz"), 503)
    assert body["detail"] == "data root /data is not writable"
    assert svc.client.get("/healthz").status_code == 200


def test_end_to_end_run_cancel_and_logs(svc: Service) -> None:
    svc.runner.start()
    job = svc.client.post("/v1/datasets", json={"name": "a", "count": 7}).json()
    deadline = time.monotonic() + 10
    while (got := svc.client.get(f"/v1/jobs/{job['id']}")).json()["state"] != "succeeded":
        assert time.monotonic() < deadline, got.json()
        time.sleep(0.02)
    assert "retry-after" not in got.headers
    assert got.json()["result"] == {"count": 7}
    logs = svc.client.get(f"/v1/jobs/{job['id']}/logs")
    assert logs.headers["content-type"].startswith("text/plain")
    assert "counted 7 images" in logs.text
    tail = svc.client.get(f"/v1/jobs/{job['id']}/logs", params={"tail_bytes": 30}).text
    assert len(tail.encode()) <= 30

    long = svc.client.post("/v1/datasets", json={"name": "b", "kind": "wait_for_stop"}).json()
    wait_ready(svc.store, long["id"])
    resp = svc.client.post(f"/v1/jobs/{long['id']}/cancel")
    assert resp.status_code == 202
    assert resp.json()["cancel_requested"] is True
    assert resp.headers["retry-after"] == "2"
    deadline = time.monotonic() + 10
    while svc.client.get(f"/v1/jobs/{long['id']}").json()["state"] != "cancelled":
        assert time.monotonic() < deadline
        time.sleep(0.02)


@pytest.mark.parametrize("service", ["dataset", "trainer"])
def test_the_openapi_spec_says_problem_json_for_every_error(service, tmp_path):
    import importlib

    from jobkit.problems import PROBLEM_JSON

    main = importlib.import_module(f"{service}_service.main")
    settings = importlib.import_module(f"{service}_service.settings")
    spec = main.create_app(settings.Settings(data_root=tmp_path)).openapi()
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            for code, response in responses.items():
                if code[0] in "45":
                    assert list(response["content"]) == [PROBLEM_JSON], (path, method, code)
            if path not in ("/healthz", "/readyz"):
                assert "401" in responses, (path, method)
            body = operation.get("requestBody", {}).get("content", {})
            if "application/json" in body:
                assert {"400", "413", "415", "422"} <= set(responses), (path, method)
            elif body:  # an upload: any content type, so no 415
                assert {"400", "413", "422"} <= set(responses), (path, method)
                assert "415" not in responses, (path, method)


def test_a_presenter_shows_jobs_as_the_service_names_them(tmp_path: Path) -> None:
    """The trainer's way: ``/v1/runs/{run_id}`` answers runs, with fields of their own."""
    from jobkit.models import JobList, JobPublic

    class Run(JobPublic):
        shown_as: str

    class RunList(JobList):
        items: list[Run]

    store = JobStore(tmp_path / "jobs.db")
    job = store.create("succeed", {"count": 1})
    app = FastAPI()
    install_problem_handlers(app)

    def presenter():
        return lambda j: Run(**j.model_dump(), shown_as=f"run {j.id}")

    app.include_router(
        make_jobs_router(
            "runs",
            lambda: store,
            lambda: None,
            presenter=presenter,
            item_model=Run,
            list_model=RunList,
        )
    )
    client = TestClient(app)
    assert client.get(f"/v1/runs/{job.id}").json()["shown_as"] == f"run {job.id}"
    assert [r["shown_as"] for r in client.get("/v1/runs").json()["items"]] == [f"run {job.id}"]
    missing = problem(client.get("/v1/runs/0123abcd"), 404)
    assert missing["title"] == "Run not found" and missing["run_id"] == "0123abcd"
    assert missing["type"] == problem_type("run-not-found")
    assert "/v1/runs/{run_id}" in client.get("/openapi.json").json()["paths"]


def test_a_body_too_large_is_a_413_problem(tmp_path):
    from dataset_service.main import create_app
    from dataset_service.settings import Settings

    settings = Settings(data_root=tmp_path, max_body_bytes=4096)
    with TestClient(create_app(settings)) as client:
        body = json.dumps({"name": "x", "padding": "y" * 10_000})
        declared = client.post(
            "/v1/jobs", content=body, headers={"content-type": "application/json"}
        )
        assert declared.status_code == 413
        assert declared.headers["content-type"].startswith("application/problem+json")
        assert "4,096 bytes" in declared.json()["detail"]

        def chunks():  # no Content-Length: read up to the limit, then refused
            for _ in range(10):
                yield b"y" * 1000

        streamed = client.post(
            "/v1/jobs", content=chunks(), headers={"content-type": "application/json"}
        )
        assert streamed.status_code == 413
        assert client.get("/v1/jobs").json()["items"] == []
        small = client.post("/v1/jobs", json={"name": "ok", "source": {"kind": "synthetic",
                            "classes": 2, "train_per_class": 2, "val_per_class": 1,
                            "test_images": 1}})  # fmt: skip
        assert small.status_code == 202
