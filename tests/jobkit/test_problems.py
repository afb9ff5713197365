"""problem+json bodies for HTTP, validation, jobkit and unexpected errors."""

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field

from jobkit.errors import IdempotencyConflict, JobNotFound, JobStateConflict, ResourceBusy
from jobkit.problems import (
    PROBLEM_JSON,
    ProblemError,
    field_path,
    install_problem_handlers,
    problem_type,
)


class Config(BaseModel):
    batch_size: int = Field(gt=0)


class TrainRequest(BaseModel):
    name: str
    config: Config


def make_app() -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)

    @app.post("/v1/runs")
    def create(body: TrainRequest) -> dict:
        return {"ok": True}

    @app.get("/teapot")
    def teapot() -> None:
        raise ProblemError(
            418, "Short and stout", "No coffee here", type_=problem_type("teapot"), pot="brown"
        )

    @app.get("/busy")
    def busy() -> None:
        raise ResourceBusy("abc123", "dataset:tiny")

    @app.get("/reused")
    def reused() -> None:
        raise IdempotencyConflict("key-1", "abc123")

    @app.get("/missing")
    def missing() -> None:
        raise JobNotFound("abc123")

    @app.get("/finished")
    def finished() -> None:
        raise JobStateConflict("abc123", "succeeded", "job abc123 is already succeeded")

    @app.get("/crash")
    def crash() -> None:
        raise RuntimeError("secret internals")

    return app


@pytest.fixture
def client() -> TestClient:
    return TestClient(make_app(), raise_server_exceptions=False)


def assert_problem(resp, status: int, path: str) -> dict:
    assert resp.status_code == status
    assert resp.headers["content-type"] == PROBLEM_JSON
    body = resp.json()
    assert body["status"] == status
    assert body["instance"] == path
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    assert isinstance(body["type"], str)
    return body


def test_unknown_route_404(client: TestClient) -> None:
    body = assert_problem(client.get("/nowhere"), 404, "/nowhere")
    assert body["type"] == "about:blank"
    assert body["title"] == "Not Found"
    assert "/nowhere" in body["detail"]


def test_method_not_allowed_405_keeps_allow_header(client: TestClient) -> None:
    resp = client.delete("/teapot")
    assert_problem(resp, 405, "/teapot")
    assert resp.headers["allow"] == "GET"


def test_validation_error_names_fields(client: TestClient) -> None:
    resp = client.post("/v1/runs", json={"config": {"batch_size": 0}})
    body = assert_problem(resp, 422, "/v1/runs")
    assert body["type"] == problem_type("validation-error")
    fields = {e["field"]: e["message"] for e in body["errors"]}
    assert set(fields) == {"body.name", "body.config.batch_size"}
    assert "greater than 0" in fields["body.config.batch_size"]
    assert "body.config.batch_size" in body["detail"]
    assert body["detail"].startswith("2 invalid fields")


def test_invalid_json_body(client: TestClient) -> None:
    resp = client.post(
        "/v1/runs", content=b'{"name": ', headers={"content-type": "application/json"}
    )
    body = assert_problem(resp, 422, "/v1/runs")
    assert body["errors"][0]["field"] == "body"
    assert "not valid JSON" in body["errors"][0]["message"]


def test_problem_error_with_extension_members(client: TestClient) -> None:
    body = assert_problem(client.get("/teapot"), 418, "/teapot")
    assert body == {
        "type": problem_type("teapot"),
        "title": "Short and stout",
        "status": 418,
        "detail": "No coffee here",
        "instance": "/teapot",
        "pot": "brown",
    }


def test_resource_busy_409_names_job(client: TestClient) -> None:
    body = assert_problem(client.get("/busy"), 409, "/busy")
    assert body["type"] == problem_type("resource-busy")
    assert body["job_id"] == "abc123"
    assert "abc123" in body["detail"]
    assert body["resource_key"] == "dataset:tiny"


def test_idempotency_conflict_422(client: TestClient) -> None:
    body = assert_problem(client.get("/reused"), 422, "/reused")
    assert body["type"] == problem_type("idempotency-conflict")
    assert body["job_id"] == "abc123"


def test_job_not_found_404_and_state_conflict_409(client: TestClient) -> None:
    assert assert_problem(client.get("/missing"), 404, "/missing")["job_id"] == "abc123"
    body = assert_problem(client.get("/finished"), 409, "/finished")
    assert body["state"] == "succeeded"


def test_unexpected_error_500_without_internals(client: TestClient) -> None:
    body = assert_problem(client.get("/crash"), 500, "/crash")
    assert "secret" not in body["detail"]


def test_problem_error_rejects_reserved_members() -> None:
    with pytest.raises(ValueError):
        ProblemError(400, "x", "y", instance="/elsewhere")


def test_field_path() -> None:
    assert field_path(("body", "config", "batch_size")) == "body.config.batch_size"
    assert field_path(("body", "items", 2, "name")) == "body.items[2].name"
    assert field_path(("query", "limit")) == "query.limit"
