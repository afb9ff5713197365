"""``/v1/sweeps`` through the app: every bad space, unknown field and out-of-bounds range is a
422 naming its field before the 202; a name is a sweep (the same body again answers it, another
body is a 409); a sweep is listed, read, stopped (its running trials cancelled) and plotted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.trainer.support import TINY, wait_for
from trainer_service.main import create_app
from trainer_service.settings import Settings

BASE = {k: v for k, v in TINY.items() if k != "dataset"}
UNBATCHED = {k: v for k, v in BASE.items() if k != "batch_size"}
GOOD = {"name": "lr", "dataset": "toy", "base": {**BASE, "epochs": 50},
        "space": {"learning_rate": {"low": 0.001, "high": 0.1, "log": True},
                  "crop_padding": {"choices": [0, 2]}},
        "max_trials": 2, "max_concurrent": 1}  # fmt: skip


@pytest.fixture
def client(data_root: Path) -> Iterator[TestClient]:
    app = create_app(Settings(data_root=data_root, sweep_poll_s=0.2))
    with TestClient(app) as client:
        yield client


def with_(**changes) -> dict:
    return {**GOOD, **changes}


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        (with_(space={"nope": {"choices": [1]}}), "body.space.nope", "not a run field"),
        (
            with_(space={"mixed_precision": {"choices": ["off"]}}),
            "body.space.mixed_precision",
            "may not vary",
        ),
        (with_(space={"flip": {"low": 0, "high": 1}}), "body.space.flip", "takes no range"),
        (
            with_(space={"learning_rate": {"low": 0.01, "high": 20.0}}),
            "body.space.learning_rate.high",
            "less than or equal to 10",
        ),
        (
            with_(space={"label_smoothing": {"low": 0.1, "high": 0.9}}),
            "body.space.label_smoothing.high",
            "0.5",
        ),
        (
            with_(space={"crop_padding": {"low": 0.5, "high": 4}}),
            "body.space.crop_padding.low",
            "int field",
        ),
        (
            with_(space={"crop_padding": {"choices": [0, 40]}}),
            "body.space.crop_padding.choices[1]",
            "32",
        ),
        (
            with_(base=UNBATCHED, space={"batch_size": {"choices": [16, 4000]}}),
            "body.space.batch_size.choices[1]",
            "train images",
        ),
        (
            with_(space={"warmup_epochs": {"choices": [0.0, 80.0]}}),
            "body.space.warmup_epochs.choices[1]",
            "longer than the run",
        ),
        (
            with_(space={"learning_rate": {"low": 0.1, "high": 0.01}}),
            "body.space.learning_rate",
            "less than high",
        ),
        (
            with_(space={"learning_rate": {"low": 0.0, "high": 0.1, "log": True}}),
            "body.space.learning_rate",
            "log scale",
        ),
        (with_(space={"learning_rate": {"low": 0.01}}), "body.space.learning_rate", "high"),
        (
            with_(space={"learning_rate": {"low": 0.01, "high": 0.1, "choices": [0.1]}}),
            "body.space.learning_rate",
            "not both",
        ),
        (with_(space={"seed": {"choices": [1, 1]}}), "body.space.seed", "repeat"),
        (with_(space={"epochs": {"choices": [2, 3]}}), "body.space.epochs", "set in base too"),
        (with_(sampler="grid"), "body.space.learning_rate", "grid"),
        (with_(space={}), "body.space", ""),
        (with_(base={**BASE, "epochs": 0}), "body.base.epochs", "greater than or equal to 1"),
        (with_(base={**BASE, "dataset": "toy"}), "body.base.dataset", "set by the sweep"),
        (with_(base={**BASE, "nope": 1}), "body.base.nope", "Extra inputs"),
        (with_(dataset="nowhere"), "body.dataset", "nowhere"),
        (with_(name="Bad Name"), "body.name", "pattern"),
        (with_(name="x" * 27), "body.name", "pattern"),
        (with_(metric="val_loss", direction="maximize"), "body", "minimize"),
        (with_(max_trials=0), "body.max_trials", "greater than or equal to 1"),
        (with_(max_trials=1001), "body.max_trials", "less than or equal to 1000"),
        (with_(max_concurrent=65), "body.max_concurrent", "less than or equal to 64"),
        (with_(max_time_min=0), "body.max_time_min", "greater than 0"),
        (with_(prune_after_epochs=-1), "body.prune_after_epochs", "greater than or equal to 0"),
        (with_(surprise=True), "body.surprise", "Extra inputs"),
    ],
)
def test_a_bad_sweep_is_a_422_naming_its_field(client: TestClient, body, field, words):
    response = client.post("/v1/sweeps", json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    errors = response.json()["errors"]
    assert any(e["field"] == field and words in e["message"] for e in errors), errors
    assert client.get("/v1/sweeps").json() == {"items": []}  # nothing was made


def test_a_sweep_is_made_followed_stopped_and_its_name_is_its_key(client: TestClient):
    made = client.post("/v1/sweeps", json=GOOD)
    assert made.status_code == 202, made.text
    assert made.headers["location"] == "/v1/sweeps/lr" and made.headers["retry-after"]
    body = made.json()
    assert body["state"] == "running" and body["direction"] == "maximize"
    assert body["request"]["space"] == {"learning_rate": GOOD["space"]["learning_rate"],
                                        "crop_padding": {"choices": [0, 2]}}  # fmt: skip
    assert body["trials_wanted"] == 2
    assert client.post("/v1/sweeps", json=GOOD).status_code == 202  # the same: answered again
    other = client.post("/v1/sweeps", json=with_(max_trials=3))
    assert other.status_code == 409 and other.json()["sweep"] == "lr"
    assert [s["name"] for s in client.get("/v1/sweeps").json()["items"]] == ["lr"]
    assert client.get("/v1/sweeps/nope").status_code == 404
    assert client.get("/v1/sweeps/lr/plot").status_code == 404  # no trial finished yet

    trial = wait_for(lambda: (t := client.get("/v1/sweeps/lr").json()["trials"]) and t[0],
                     timeout=60)  # fmt: skip
    run = client.get(f"/v1/runs/{trial['run_id']}").json()
    assert run["trial"] == {"sweep": "lr", "number": 0} and run["request"]["name"] == "lr-0"
    assert run["request"]["tags"] == ["sweep:lr"]
    tagged = client.get("/v1/runs", params={"tag": "sweep:lr"}).json()["items"]
    assert [r["id"] for r in tagged] == [trial["run_id"]]

    stopping = client.post("/v1/sweeps/lr/stop")
    assert stopping.status_code in (200, 202), stopping.text
    stopped = wait_for(lambda: (s := client.get("/v1/sweeps/lr").json())["state"] == "stopped"
                       and s, timeout=120)  # fmt: skip
    assert stopped["reason"] == "stopped on request"
    assert [t["state"] for t in stopped["trials"]] == ["stopped"]
    assert client.get(f"/v1/runs/{trial['run_id']}").json()["state"] == "cancelled"
    assert client.post("/v1/sweeps/lr/stop").status_code == 409
    assert client.get("/v1/sweeps/lr/plot").headers["content-type"] == "image/png"


def test_the_sweeps_are_in_the_openapi_document(client: TestClient):
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/sweeps", "/v1/sweeps/{name}", "/v1/sweeps/{name}/stop",
            "/v1/sweeps/{name}/plot"} <= set(paths)  # fmt: skip
    schema = client.get("/openapi.json").json()["components"]["schemas"]["SweepRequest"]
    assert {"space", "base", "metric", "sampler", "pruner", "max_trials", "max_concurrent",
            "max_time_min", "prune_after_epochs"} <= set(schema["properties"])  # fmt: skip
