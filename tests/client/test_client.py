"""The typed client against the real services: success, a failed job, 401, 409, 422 with field
names, Retry-After honoured while polling; and its defaults agree with the services and compose."""

from __future__ import annotations

import time

import httpx
import pytest

from dataset_service.settings import DEFAULT_PORT as DATASET_PORT
from tests.client.conftest import DATASET, TINY_RUN, Live
from tests.docker.test_compose import render
from tin_client import ApiError, DatasetClient, TrainerClient
from tin_client.client import (
    DEFAULT_DATASET_URL,
    DEFAULT_TRAINER_URL,
    TERMINAL,
    _new_text,
    retry_after_s,
)
from trainer_service.settings import DEFAULT_PORT as TRAINER_PORT

pytestmark = pytest.mark.slow


class Sleeps(list):
    """Records the waits the client asks for instead of sleeping them."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def test_train_a_run_and_read_what_it_wrote(live: Live):
    sleeps = Sleeps()
    with live.trainer(sleep=sleeps) as trainer:
        run = trainer.train(DATASET, epochs=1, **TINY_RUN)
        assert run["state"] in ("queued", "running")
        done = trainer.wait(run["id"], timeout=300)
        assert done["state"] == "succeeded", done
        assert [row["epoch"] for row in trainer.history(run["id"])] == [1]
        assert trainer.history_csv(run["id"]).splitlines()[0].startswith("epoch,")
        assert any(c["epoch"] == 1 for c in trainer.checkpoints(run["id"]))
        assert "epoch 1/1" in trainer.logs(run["id"])
        assert run["id"] in [r["id"] for r in trainer.list()]
        report = trainer.model_report(width=8, levels=[1], classes=3)
        assert report["total_params"] > 0
    # Every wait was the service's Retry-After (2 s while a job is queued or running).
    assert sleeps and set(sleeps) == {2.0}
    with live.dataset() as dataset:
        assert DATASET in [d["name"] for d in dataset.datasets()]
        assert dataset.dataset(DATASET)["splits"]["train"]["num_records"] == 3 * 16


def test_a_failed_job_ends_failed_with_its_reason(live: Live):
    (live.data_root / "raw").mkdir(exist_ok=True)
    (live.data_root / "raw" / "broken.zip").write_bytes(b"this is not a zip archive")
    with live.dataset(sleep=Sleeps()) as dataset:
        job = dataset.prepare("broken", {"kind": "zip", "path": "raw/broken.zip"})
        done = dataset.wait(job["id"], timeout=120)
    assert done["state"] == "failed"
    assert done["error"]["message"]


def test_a_missing_token_is_a_401_problem(live: Live):
    anonymous = DatasetClient(live.services["dataset"].url, "")
    with anonymous, pytest.raises(ApiError) as caught:
        anonymous.datasets()
    assert caught.value.status == 401
    assert caught.value.title and caught.value.body["status"] == 401


def test_cancelling_a_finished_job_is_a_409_problem(live: Live):
    with live.dataset() as dataset:
        (finished, *_) = [j for j in dataset.list() if j["state"] == "succeeded"]
        with pytest.raises(ApiError) as caught:
            dataset.cancel(finished["id"])
    assert caught.value.status == 409
    assert caught.value.detail


def test_an_invalid_run_is_a_422_naming_the_fields(live: Live):
    with live.trainer() as trainer, pytest.raises(ApiError) as caught:
        trainer.train(DATASET, width="huge", epochs=0)
    assert caught.value.status == 422
    fields = caught.value.invalid_fields
    assert "body.epochs" in fields and any(f.startswith("body.width") for f in fields), fields
    assert "422" in str(caught.value)


def test_defaults_are_the_ports_compose_publishes():
    assert f"http://127.0.0.1:{DATASET_PORT}" == DEFAULT_DATASET_URL
    assert f"http://127.0.0.1:{TRAINER_PORT}" == DEFAULT_TRAINER_URL
    published = {
        name: service["ports"][0]["published"] for name, service in render()["services"].items()
    }
    assert published["dataset"] == str(DATASET_PORT)
    assert published["trainer"] == str(TRAINER_PORT)


def test_terminal_states_are_jobkits():
    from jobkit.models import TERMINAL_STATES

    assert {str(getattr(s, "value", s)) for s in TERMINAL_STATES} == TERMINAL


def test_retry_after_parsing_and_log_tails():
    assert retry_after_s(httpx.Response(200, headers={"Retry-After": "3"})) == 3.0
    assert retry_after_s(httpx.Response(200)) is None
    assert retry_after_s(httpx.Response(200, headers={"Retry-After": "soon"})) is None
    assert _new_text("a\nb\n", "a\nb\nc\n") == "c\n"
    # A tail that no longer starts where the last one did (the log grew past the tail size).
    seen = "".join(f"line {i}\n" for i in range(200))
    assert _new_text(seen, seen[300:] + "new\n") == "new\n"


def test_a_non_json_error_still_carries_its_status():
    def handler(request):
        return httpx.Response(502, text="bad gateway")

    trainer = TrainerClient("http://svc", "", transport=httpx.MockTransport(handler))
    with trainer, pytest.raises(ApiError) as caught:
        trainer.list()
    assert caught.value.status == 502 and caught.value.detail == "bad gateway"


def test_predict_uploads_the_images_and_retries_a_busy_predictor():
    answers = iter([
        httpx.Response(429, headers={"Retry-After": "7"},
                       json={"title": "Predictor busy", "status": 429, "detail": "busy"}),
        httpx.Response(200, json={"run": "r1", "items": [{"image": "a.png"}, {"image": "b"}]}),
    ])  # fmt: skip
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return next(answers)

    sleeps = Sleeps()
    images = [("a.png", b"\x89PNG..."), ("b", b"bytes of b")]
    with TrainerClient("http://trainer", "", transport=httpx.MockTransport(handler),
                       sleep=sleeps) as trainer:  # fmt: skip
        answer = trainer.predict("r1", images, checkpoint="final")
    assert [item["image"] for item in answer["items"]] == ["a.png", "b"]
    assert sleeps == [7.0] and len(seen) == 2
    request = seen[-1]
    assert request.url.path == "/v1/runs/r1/predict" and request.url.params["checkpoint"] == "final"
    body = request.read()
    assert request.headers["content-type"].startswith("multipart/form-data")
    assert body.count(b'name="images"') == 2 and b'filename="a.png"' in body
    assert b"bytes of b" in body


def test_predict_gives_up_on_a_predictor_that_stays_busy():
    def busy(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, json={"title": "Predictor busy", "status": 429})

    sleeps = Sleeps()
    trainer = TrainerClient("http://trainer", "", transport=httpx.MockTransport(busy), sleep=sleeps)
    with trainer, pytest.raises(ApiError) as refused:
        trainer.predict("r1", [("a", b"x")], busy_retries=2)
    assert refused.value.status == 429 and sleeps == [2.0, 2.0]  # no Retry-After: the default


def test_a_run_ends_early_by_its_rule_and_keeps_its_dataset_version(live: Live):
    """Through the real services: early stopping ends a run succeeded and says why; a run reads
    the dataset version it began with, its status says when the dataset was prepared again, and
    once that version is pruned a resume is a 409 that says why."""
    name = "syn-versions"
    source = {"kind": "synthetic", "classes": 3, "train_per_class": 8, "val_per_class": 2,
              "test_images": 2}  # fmt: skip

    def prepare(seed: int) -> None:
        with live.dataset() as dataset:
            job = dataset.wait(dataset.prepare(name, {**source, "seed": seed})["id"], timeout=300)
            assert job["state"] == "succeeded", job

    prepare(1)
    with live.trainer() as trainer:
        stopped = trainer.wait(trainer.train(
            name, epochs=8, early_stopping={"patience": 1, "min_delta": 2.0}, **TINY_RUN
        )["id"], timeout=300)  # fmt: skip
        assert stopped["state"] == "succeeded", stopped
        assert stopped["result"]["stopped_early"] == "early_stopping"
        assert stopped["training"]["completed_epochs"] == 2

        long = trainer.train(name, epochs=500, **TINY_RUN)["id"]
        deadline = time.monotonic() + 300
        while trainer.get(long)["training"]["completed_epochs"] < 1:
            assert time.monotonic() < deadline
            time.sleep(0.3)
        trainer.cancel(long)
        run = trainer.wait(long, timeout=300)
        assert run["state"] == "cancelled" and run["dataset"]["current"] is True

        prepare(2)  # prepared again: the run's version is the previous one, still kept
        assert trainer.get(long)["dataset"] == {**run["dataset"], "current": False}
        prepare(3)  # and again: the volume keeps two versions, the run's is gone
        assert trainer.get(long)["dataset"]["available"] is False
        with pytest.raises(ApiError) as refused:
            trainer.resume(long)
    assert refused.value.status == 409
    assert "is no longer on the volume" in refused.value.detail
