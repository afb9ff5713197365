"""The optional bearer-token check."""

import secrets

import pytest
from fastapi import APIRouter, Depends, FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from jobkit import auth
from jobkit.api import health_router
from jobkit.auth import bearer_token_dependency
from jobkit.problems import PROBLEM_JSON, install_problem_handlers
from jobkit.settings import ServiceSettings

TOKEN = "s3cr3t-token"


def make_client(token: str | None) -> TestClient:
    settings = ServiceSettings(api_token=SecretStr(token) if token is not None else None)
    app = FastAPI()
    install_problem_handlers(app)
    protected = APIRouter()

    @protected.get("/v1/jobs")
    def jobs() -> dict:
        return {"items": []}

    app.include_router(health_router(lambda: (True, "ok")))
    app.include_router(protected, dependencies=[Depends(bearer_token_dependency(settings))])
    return TestClient(app)


@pytest.fixture
def client() -> TestClient:
    return make_client(TOKEN)


def test_right_token_passes(client: TestClient) -> None:
    resp = client.get("/v1/jobs", headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status_code == 200
    assert client.get("/v1/jobs", headers={"Authorization": f"bearer {TOKEN}"}).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": "Bearer"},
        {"Authorization": TOKEN},
    ],
)
def test_missing_or_wrong_token_401(client: TestClient, headers: dict) -> None:
    resp = client.get("/v1/jobs", headers=headers)
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"] == "Bearer"
    assert resp.headers["content-type"] == PROBLEM_JSON
    body = resp.json()
    assert body["status"] == 401 and body["instance"] == "/v1/jobs"
    assert TOKEN not in resp.text


def test_health_stays_open(client: TestClient) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200


def test_no_token_configured_means_open() -> None:
    assert make_client(None).get("/v1/jobs").status_code == 200
    assert make_client("").get("/v1/jobs").status_code == 200


def test_uses_constant_time_compare(client: TestClient, monkeypatch) -> None:
    calls = []
    original = secrets.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return original(a, b)

    monkeypatch.setattr(auth.secrets, "compare_digest", spy)
    client.get("/v1/jobs", headers={"Authorization": "Bearer nope"})
    assert calls == [(b"nope", TOKEN.encode())]


def test_settings_callable_read_per_request() -> None:
    current = {"token": "one"}
    app = FastAPI()
    install_problem_handlers(app)
    dep = bearer_token_dependency(lambda: ServiceSettings(api_token=SecretStr(current["token"])))

    @app.get("/x", dependencies=[Depends(dep)])
    def x() -> dict:
        return {}

    client = TestClient(app)
    assert client.get("/x", headers={"Authorization": "Bearer one"}).status_code == 200
    current["token"] = "two"
    assert client.get("/x", headers={"Authorization": "Bearer one"}).status_code == 401
