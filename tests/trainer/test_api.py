"""The HTTP API without workers: validation, idempotency, run views, resume rules, auth, report.

The app's runner is created but not started, so queued runs stay queued (no worker process);
``test_api_workers.py`` runs real workers.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest
from fastapi.testclient import TestClient

from datavolume import DataRoot
from datavolume.runs import RunFolder
from jobkit.models import JobError, JobState
from jobkit.problems import PROBLEM_JSON
from jobkit.runner import JobRunner
from jobkit.store import JobStore
from shard_format.schema import METADATA_FILE
from tests.trainer.support import TINY, TOY
from trainer_service.main import create_app
from trainer_service.runs import checkpoints
from trainer_service.runs.config import recipe_values
from trainer_service.runs.history import append_epoch, read_history
from trainer_service.runs.recipes import RECIPE_FIELDS, RECIPES
from trainer_service.settings import Settings

TOKEN = "s3cret"


class Offline:
    def __init__(self, client: TestClient, store: JobStore, data_root: Path):
        self.client, self.store, self.data_root = client, store, data_root

    def post_run(self, **overrides) -> dict:
        response = self.client.post("/v1/runs", json={**TINY, "epochs": 2, **overrides})
        assert response.status_code == 202, response.text
        return response.json()


def offline_app(data_root: Path, **settings) -> tuple[TestClient, JobStore]:
    settings = Settings(data_root=data_root, **settings)
    app = create_app(settings)
    store = JobStore(settings.jobs_db)
    app.state.store = store
    app.state.runner = JobRunner(store, targets={"train": "unused:run"}, log_dir=settings.logs_dir)
    return TestClient(app), store  # no lifespan: the runner never starts a worker


@pytest.fixture
def api(data_root: Path) -> Offline:
    client, store = offline_app(data_root)
    return Offline(client, store, data_root)


def problem(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    return response.json()


def test_health_readiness_and_docs(api: Offline):
    assert api.client.get("/healthz").json() == {"status": "ok"}
    assert api.client.get("/readyz").status_code == 200
    paths = api.client.get("/openapi.json").json()["paths"]
    for path in (
        "/v1/runs",
        "/v1/runs/{run_id}",
        "/v1/runs/{run_id}/history",
        "/v1/runs/{run_id}/logs",
        "/v1/runs/{run_id}/checkpoints",
        "/v1/runs/{run_id}/cancel",
        "/v1/runs/{run_id}/resume",
        "/v1/model-report",
    ):
        assert path in paths
    assert api.client.get("/docs").status_code == 200


def test_post_a_run_then_read_it(api: Offline):
    response = api.client.post("/v1/runs", json={**TINY, "epochs": 2})
    assert response.status_code == 202
    run = response.json()
    assert response.headers["location"] == f"/v1/runs/{run['id']}"
    assert run["state"] == "queued" and run["queue_position"] == 1 and run["kind"] == "train"
    assert run["request"]["momentum"] == 0.9  # defaults filled in and stored
    assert run["run_dir"] == f"runs/{run['id']}"
    assert run["training"]["epochs"] == 2 and run["checkpoints"] == []

    got = api.client.get(response.headers["location"])
    assert got.status_code == 200 and got.json()["id"] == run["id"]
    assert got.headers["retry-after"]
    listed = api.client.get("/v1/runs").json()["items"]
    assert [r["id"] for r in listed] == [run["id"]]
    assert api.client.get(f"/v1/runs/{run['id']}/history").json() == []
    csv = api.client.get(f"/v1/runs/{run['id']}/history", params={"format": "csv"})
    assert csv.text.startswith("epoch,step,loss,") and csv.headers["content-type"].startswith(
        "text/csv"
    )
    assert api.client.get(f"/v1/runs/{run['id']}/checkpoints").json() == []
    assert api.client.get(f"/v1/runs/{run['id']}/logs").text == ""


def test_second_run_waits_in_the_queue(api: Offline):
    first = api.post_run()
    second = api.post_run(seed=1)
    assert (first["queue_position"], second["queue_position"]) == (1, 2)
    api.store.mark_running(first["id"], 12345)
    assert api.client.get(f"/v1/runs/{second['id']}").json()["queue_position"] == 1
    assert api.client.get(f"/v1/runs/{first['id']}").json()["queue_position"] is None


def test_idempotency_key(api: Offline):
    body = {**TINY, "epochs": 2}
    headers = {"Idempotency-Key": "abc-1"}
    first = api.client.post("/v1/runs", json=body, headers=headers)
    again = api.client.post("/v1/runs", json=body, headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    other = api.client.post("/v1/runs", json={**body, "epochs": 3}, headers=headers)
    assert problem(other, 422)["job_id"] == first.json()["id"]
    assert len(api.client.get("/v1/runs").json()["items"]) == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"batch_size": 0}, "body.batch_size"),
        ({"width": 6}, "body.width"),
        ({"levels": [1, -2]}, "body.levels[1]"),
        ({"schedule": "poly"}, "body.schedule"),
        ({"learning_rate": "fast"}, "body.learning_rate"),
        ({"surprise": True}, "body.surprise"),
        # bounded before any worker starts (none of these builds a model)
        ({"width": 1_000_000}, "body.width"),
        ({"levels": [1_000_000_000]}, "body.levels[0]"),
        ({"levels": [100] * 1000}, "body.levels"),
        ({"width": 512, "levels": [4, 6, 3, 2]}, "body.levels"),
        ({"batch_size": 100_000}, "body.batch_size"),
        ({"batch_size": 10_000}, "body.batch_size"),  # more than the toy's train split
        ({"tags": ["has space"]}, "body.tags[0]"),
        ({"tags": ["a", "a"]}, "body.tags"),
        ({"tags": [f"t{i}" for i in range(17)]}, "body.tags"),
        ({"name": ""}, "body.name"),
        ({"name": "line\nbreak"}, "body.name"),
        ({"early_stopping": {"patience": 0}}, "body.early_stopping.patience"),
        ({"early_stopping": {"monitor": "loss"}}, "body.early_stopping.monitor"),
        ({"max_runtime_min": 0}, "body.max_runtime_min"),
        ({"time_budget_min": -1.0}, "body.time_budget_min"),
    ],
)
def test_invalid_config_is_a_422_naming_the_field(api: Offline, change, field):
    body = problem(api.client.post("/v1/runs", json={**TINY, **change}), 422)
    assert [e["field"] for e in body["errors"]] == [field]
    assert field in body["detail"]


def test_unknown_dataset_is_a_422_on_the_dataset_field(api: Offline):
    body = problem(api.client.post("/v1/runs", json={**TINY, "dataset": "absent"}), 422)
    assert body["errors"][0]["field"] == "body.dataset"
    assert body["type"].endswith("dataset-not-found") and "absent" in body["detail"]


def test_foreign_schema_version_is_a_422(api: Offline):
    folder = DataRoot(api.data_root).dataset("old")
    folder.mkdir(parents=True)
    raw = json.loads((DataRoot(api.data_root).dataset(TOY) / METADATA_FILE).read_text())
    (folder / METADATA_FILE).write_text(json.dumps({**raw, "schema_version": 99}))
    body = problem(api.client.post("/v1/runs", json={**TINY, "dataset": "old"}), 422)
    assert body["errors"][0]["field"] == "body.dataset"
    assert body["type"].endswith("dataset-schema-version") and "99" in body["detail"]


def test_init_checkpoint_must_be_a_keras_file(api: Offline):
    fake = api.data_root / "fake.keras"
    fake.write_text("not a zip")
    body = problem(api.client.post("/v1/runs", json={**TINY, "init_checkpoint": "fake.keras"}), 422)
    assert body["errors"][0]["field"] == "body.init_checkpoint"
    assert "not a Keras .keras checkpoint" in body["detail"]
    assert api.client.get("/v1/runs").json()["items"] == []


def test_init_checkpoint_must_exist_in_the_data_root(api: Offline):
    response = api.client.post(
        "/v1/runs", json={**TINY, "init_checkpoint": "runs/none/checkpoints/best.keras"}
    )
    assert problem(response, 422)["errors"][0]["field"] == "body.init_checkpoint"


@pytest.mark.parametrize(
    ("path", "message"),
    [("runs/" + "x" * 300 + ".keras", "too long"), ("loop/best.keras", "cannot be resolved")],
)
def test_an_unusable_init_checkpoint_path_is_a_422_not_a_500(api: Offline, path, message):
    (api.data_root / "loop").symlink_to("loop")
    found = problem(api.client.post("/v1/runs", json={**TINY, "init_checkpoint": path}), 422)
    assert found["errors"][0]["field"] == "body.init_checkpoint"
    assert message in found["errors"][0]["message"]
    assert str(api.data_root) not in found["detail"]


@pytest.mark.parametrize("checkpoint", ["1" * 4301, "epoch-" + "1" * 4301 + ".keras", "1" * 10])
def test_a_resume_naming_a_huge_epoch_is_a_422(api: Offline, checkpoint):
    run = api.post_run()
    api.store.mark_running(run["id"], 1)
    api.store.finish(run["id"], JobState.INTERRUPTED)
    answer = api.client.post(f"/v1/runs/{run['id']}/resume", json={"checkpoint": checkpoint})
    assert problem(answer, 422)["errors"][0]["field"] == "body.checkpoint"


def test_unknown_run_is_404(api: Offline):
    for method, path in [
        ("get", "/v1/runs/nothere"),
        ("get", "/v1/runs/nothere/history"),
        ("post", "/v1/runs/nothere/cancel"),
        ("post", "/v1/runs/nothere/resume"),
    ]:
        assert problem(api.client.request(method, path), 404)["run_id"] == "nothere"


@pytest.mark.parametrize("state", ["queued", "running", "succeeded"])
def test_resume_is_409_unless_interrupted_cancelled_or_failed(api: Offline, state):
    run = api.post_run()
    if state != "queued":
        api.store.mark_running(run["id"], 12345)
    if state == "succeeded":
        api.store.finish(run["id"], JobState.SUCCEEDED)
    body = problem(api.client.post(f"/v1/runs/{run['id']}/resume"), 409)
    assert body["state"] == state and "only an interrupted" in body["detail"]


def test_a_cancelled_run_is_not_resumable_while_its_worker_still_exits(api: Offline, monkeypatch):
    run = api.post_run()
    api.store.mark_running(run["id"], 12345)
    api.store.finish(run["id"], JobState.CANCELLED)
    runner = api.client.app.state.runner
    monkeypatch.setattr(runner, "running_job_ids", lambda: [run["id"]])  # still exiting
    body = problem(api.client.post(f"/v1/runs/{run['id']}/resume"), 409)
    assert "still exiting" in body["detail"]
    monkeypatch.setattr(runner, "running_job_ids", lambda: [])  # gone
    assert api.client.post(f"/v1/runs/{run['id']}/resume").status_code == 202


def fake_checkpoints(data_root: Path, run_id: str, accuracies: list[float]) -> RunFolder:
    """A run folder as training leaves it, with a tiny stand-in model."""
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(np.ones((2, 3)), np.zeros((2, 2)), verbose=0)
    paths = DataRoot(data_root).run(run_id)
    paths.make()
    for epoch, accuracy in enumerate(accuracies, start=1):
        append_epoch(paths, {"epoch": epoch, "step": 5 * epoch, "val_accuracy": accuracy})
        checkpoints.save_epoch(model, paths, epoch, 5 * epoch, accuracy, keep=5)
    return paths


def test_resume_an_interrupted_run_from_a_chosen_checkpoint(api: Offline):
    run = api.post_run(epochs=4)
    api.store.mark_running(run["id"], 12345)
    paths = fake_checkpoints(api.data_root, run["id"], [0.4, 0.6, 0.5])
    api.store.finish(run["id"], JobState.INTERRUPTED, JobError(type="interrupted", message="gone"))
    got = api.client.get(f"/v1/runs/{run['id']}").json()
    assert got["state"] == "interrupted" and got["error"]["type"] == "interrupted"
    assert got["training"]["completed_epochs"] == 3
    assert [c["file"] for c in got["checkpoints"]] == [
        "epoch-0001.keras",
        "epoch-0002.keras",
        "epoch-0003.keras",
        "best.keras",
    ]

    bad = api.client.post(f"/v1/runs/{run['id']}/resume", json={"checkpoint": "9"})
    assert problem(bad, 422)["errors"][0]["field"] == "body.checkpoint"
    response = api.client.post(f"/v1/runs/{run['id']}/resume", json={"checkpoint": "1"})
    assert response.status_code == 202
    assert response.headers["location"] == f"/v1/runs/{run['id']}"
    assert response.json()["state"] == "queued" and response.json()["error"] is None
    assert checkpoints.read_latest(paths).epoch == 1
    assert [r["epoch"] for r in read_history(paths)] == [1]
    assert list(checkpoints.epoch_files(paths)) == [1]


def test_run_view_shows_progress_metrics_and_eta(api: Offline):
    run = api.post_run()
    api.store.mark_running(run["id"], 12345)
    api.store.set_phase(run["id"], "epoch 2/2", 16, "batches")
    api.store.set_progress(run["id"], 5)
    metrics = {"epoch": 2, "epochs": 2, "step": 5, "steps_per_epoch": 16, "images_per_s": 99.5}
    api.store.set_metrics(run["id"], {**metrics, "eta_s": 12.0, "loss": 0.7})
    got = api.client.get(f"/v1/runs/{run['id']}").json()
    assert got["progress"]["done"] == 5 and got["progress"]["total"] == 16
    training = got["training"]
    assert (training["epoch"], training["step"], training["steps_per_epoch"]) == (2, 5, 16)
    assert training["images_per_s"] == 99.5 and training["eta_s"] == 12.0
    assert got["metrics"]["loss"] == 0.7


def test_cancel_a_queued_run(api: Offline):
    run = api.post_run()
    response = api.client.post(f"/v1/runs/{run['id']}/cancel")
    assert response.status_code == 200 and response.json()["state"] == "cancelled"
    assert problem(api.client.post(f"/v1/runs/{run['id']}/cancel"), 409)["state"] == "cancelled"


def test_bearer_token_guards_everything_but_health(data_root: Path):
    client, _ = offline_app(data_root, api_token=TOKEN)
    assert client.get("/healthz").status_code == 200
    assert problem(client.get("/v1/runs"), 401)["status"] == 401
    assert problem(client.get("/v1/model-report"), 401)["status"] == 401
    ok = client.get("/v1/runs", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200


def test_model_report_is_closed_form_and_bounded(api: Offline):
    from trainer_service.model.architecture import size

    report = api.client.get("/v1/model-report", params={"width": 8, "levels": "1,1", "classes": 4})
    assert report.status_code == 200, report.text
    body = report.json()
    assert (body["filters"], body["levels"], body["classes"]) == (8, [1, 1], 4)
    assert body["total_params"] == size(8, (1, 1), 4).total_params
    assert body["macs_per_image"] == size(8, (1, 1), 4).macs_per_image
    for params, field in (
        ({"width": "6"}, "query.width"),
        ({"width": "2048"}, "query.width"),
        ({"levels": "4,x"}, "query.levels"),
        ({"levels": ",".join(["100"] * 1000)}, "query.levels"),
        ({"width": "512", "levels": "4,6,3,2"}, "query.levels"),
    ):
        bad = api.client.get("/v1/model-report", params=params)
        assert problem(bad, 422)["errors"][0]["field"] == field, params


def test_the_schema_states_the_bounds_of_every_level(api):
    from trainer_service.model.architecture import MAX_LEVELS, MAX_REPEATS

    schemas = api.client.get("/openapi.json").json()["components"]["schemas"]
    levels = next(
        s["properties"]["levels"] for s in schemas.values() if "levels" in s.get("properties", {})
    )
    assert (levels["minItems"], levels["maxItems"]) == (1, MAX_LEVELS)
    assert (levels["items"]["minimum"], levels["items"]["maximum"]) == (0, MAX_REPEATS)


def test_recipes_are_listed_with_every_value_they_set(api: Offline):
    answer = api.client.get("/v1/recipes").json()
    assert answer["default"] == "homework"
    by_name = {item["name"]: item for item in answer["items"]}
    assert set(by_name) == set(RECIPES)
    for name, item in by_name.items():
        assert item["summary"] and item["values"] == recipe_values(name)
    assert by_name["homework"]["values"]["crop_padding"] == 0
    assert by_name["fast"]["values"]["crop_padding"] == 4


def test_a_run_names_a_recipe_and_stores_its_resolved_values(api: Offline):
    # The toy's 256 train images hold no batch of 512: the request sets its own size.
    run = api.post_run(recipe="fast", batch_size=16, epochs=10, crop_padding=2)
    request = run["request"]
    assert request["recipe"] == "fast" and request["label_smoothing"] == 0.1
    assert (request["batch_size"], request["epochs"], request["crop_padding"]) == (16, 10, 2)
    assert run["training"]["epochs"] == 10


def test_a_recipe_batch_the_dataset_cannot_fill_is_a_422(api: Offline):
    body = {**TINY, "epochs": 10, "recipe": "fast"}
    body.pop("batch_size")
    found = problem(api.client.post("/v1/runs", json=body), 422)
    assert found["errors"][0]["field"] == "body.batch_size" and "512" in found["detail"]


@pytest.mark.parametrize(
    ("change", "field"),
    [({"recipe": "turbo"}, "body.recipe"), ({"crop_padding": 40}, "body.crop_padding"),
     ({"resized_crop_scale": [0.9, 0.1]}, "body.resized_crop_scale"),
     ({"mixup_alpha": -1.0}, "body.mixup_alpha"),
     ({"label_smoothing": 0.9}, "body.label_smoothing"),
     ({"optimizer": "adam", "nesterov": True}, "body.nesterov")],
)  # fmt: skip
def test_a_bad_recipe_field_is_a_422_naming_it(api: Offline, change, field):
    found = problem(api.client.post("/v1/runs", json={**TINY, "epochs": 2, **change}), 422)
    assert [e["field"] for e in found["errors"]] == [field]


def test_the_openapi_schema_documents_the_recipe_fields(api: Offline):
    schema = api.client.get("/openapi.json").json()["components"]["schemas"]["TrainConfig"]
    for field in (*RECIPE_FIELDS, "recipe"):
        assert schema["properties"][field]["description"], field
    assert schema["properties"]["recipe"]["enum"] == list(RECIPES)


def test_runs_have_names_and_tags_to_find_them_by(api: Offline):
    first = api.post_run(name="baseline run", tags=["baseline", "half"])
    second = api.post_run(tags=["half"], seed=1)
    api.post_run(seed=2)
    assert first["request"]["name"] == "baseline run" and first["request"]["tags"] == [
        "baseline", "half"]  # fmt: skip

    def listed(**params) -> list[str]:
        response = api.client.get("/v1/runs", params=params)
        assert response.status_code == 200, response.text
        return [run["id"] for run in response.json()["items"]]

    assert listed(tag="half") == [second["id"], first["id"]]  # newest first
    assert listed(tag="baseline") == [first["id"]]
    assert listed(tag="half", state="queued", limit=1) == [second["id"]]
    assert listed(tag="nowhere") == []
    problem(api.client.get("/v1/runs", params={"tag": "x" * 65}), 422)
