"""The predictor process's answers: a request's images handed to the predictor by name and
size, its errors answered by kind (a missing checkpoint apart from every other failure), and
its statistics with the process's pid and memory. (The process itself, started by the service,
is ``tests/trainer/api/test_classify.py``'s.)"""

from __future__ import annotations

import os

import pytest

from datavolume.datasets import DatasetUnavailable
from trainer_service.inference.models import ModelUnavailable
from trainer_service.inference.server import PredictorServer
from trainer_service.runs.checkpoints import NoSuchCheckpoint
from trainer_service.settings import Settings


class Predictor:
    def __init__(self, error: Exception | None = None) -> None:
        self.error, self.calls = error, []

    def classify(self, run, checkpoint, uploads):
        if self.error is not None:
            raise self.error
        self.calls.append((run.root.name, checkpoint, uploads))
        return {"run": run.root.name, "items": [{"image": name} for name, _ in uploads]}

    def stats(self):
        return {"loads": 3}


def server(tmp_path, error=None) -> PredictorServer:
    return PredictorServer(Predictor(error), Settings(data_root=tmp_path))


REQUEST = {"op": "classify", "run": "abc", "checkpoint": "best", "names": ["a.png", "b.png"],
           "sizes": [2, 3]}  # fmt: skip


def test_a_request_is_split_into_its_images(tmp_path):
    answering = server(tmp_path)
    answer = answering.answer(REQUEST, b"aabbb")
    assert answer == {"answer": {"run": "abc", "items": [{"image": "a.png"}, {"image": "b.png"}]}}
    assert answering.predictor.calls == [("abc", "best", [("a.png", b"aa"), ("b.png", b"bbb")])]
    assert answering.answer(REQUEST, b"aabb")["error"]["kind"] == "failed"  # sizes do not add up


@pytest.mark.parametrize(
    ("error", "kind", "message"),
    [
        (NoSuchCheckpoint("run abc has no checkpoint epoch-0007.keras"), "no_checkpoint",
         "run abc has no checkpoint epoch-0007.keras"),
        (FileNotFoundError(2, "No such file or directory", "/data/runs/abc/x"), "no_checkpoint",
         "best went away as it was read"),
        (ModelUnavailable("exporting best.keras failed"), "failed", "exporting best.keras failed"),
        (TimeoutError("the model did not answer within 3 s"), "failed",
         "the model did not answer within 3 s"),
        (DatasetUnavailable("run abc names no dataset", "dataset-not-found"), "failed",
         "run abc names no dataset"),
        (RuntimeError("onnxruntime broke"), "failed", "RuntimeError: onnxruntime broke"),
    ],
)  # fmt: skip
def test_each_error_is_answered_by_its_kind(tmp_path, error, kind, message):
    answer = server(tmp_path, error).answer(REQUEST, b"aabbb")
    assert answer == {"error": {"kind": kind, "message": message}}


def test_stats_say_which_process_and_how_much_memory(tmp_path):
    answer = server(tmp_path).answer({"op": "stats"}, b"")
    assert answer["loads"] == 3 and answer["pid"] == os.getpid()
    assert 10 * 2**20 < answer["rss_bytes"] < 64 * 2**30
    assert server(tmp_path).answer({"op": "nonsense"}, b"")["error"]["kind"] == "failed"
