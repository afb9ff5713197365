"""The API side of predict: the predictor process's command and environment, the names uploads
are answered by, a full queue refused at once, a predictor's errors as the route's exceptions
and an exit status for people. (The live behaviour, with a real predictor, is
``tests/trainer/api/test_classify.py``'s.)"""

from __future__ import annotations

import asyncio
import threading

import pytest

from trainer_service.inference.classifier import (
    PREDICTOR_ENV,
    ClassificationFailed,
    Classifier,
    ClassifierBusy,
    Upload,
    describe_exit,
    safe_name,
)
from trainer_service.runs.checkpoints import NoSuchCheckpoint
from trainer_service.settings import Settings


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("cat.jpg", "cat.jpg"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\dog.png", "dog.png"),
        ("a\x00b\nc.png", "a_b_c.png"),
        ("", "image-3"),
        ("..", "image-3"),
        ("é" * 150 + ".jpg", "é" * 100),
    ],
)
def test_an_upload_is_answered_by_a_harmless_base_name(name, expected):
    assert safe_name(name, 2) == expected


def test_the_predictor_runs_on_the_cpu_with_the_services_settings(tmp_path):
    settings = Settings(data_root=tmp_path, predict_threads=3, predict_nice=17,
                        predict_max_models=2, keras_backend="jax")  # fmt: skip
    classifier = Classifier(settings)
    command = classifier.command(tmp_path / "socket")
    assert command[1:] == ["-m", "trainer_service.inference.server", "--socket",
                           str(tmp_path / "socket")]  # fmt: skip
    env = classifier.environment()
    assert env["JAX_PLATFORMS"] == "cpu" and env["CUDA_VISIBLE_DEVICES"] == ""
    assert PREDICTOR_ENV.items() <= env.items()
    # the predictor reads the service's settings as a worker does
    assert env["TRAINER_PREDICT_THREADS"] == "3" and env["TRAINER_PREDICT_NICE"] == "17"
    assert env["TRAINER_PREDICT_MAX_MODELS"] == "2" and env["TRAINER_DATA_ROOT"] == str(tmp_path)


def classify(classifier: Classifier, uploads: list[Upload]) -> dict:
    return asyncio.run(classifier.classify("abc", "best", uploads))


class Answering(Classifier):
    """A classifier whose predictor answers ``answer`` (after ``gate``), without a process."""

    def __init__(self, settings, answer) -> None:
        super().__init__(settings)
        self.answer, self.gate, self.asked = answer, threading.Event(), threading.Event()
        self.gate.set()

    async def _ask(self, header, payload=b""):
        self.asked.set()
        await asyncio.to_thread(self.gate.wait, 30)
        return self.answer


def test_one_request_over_the_queue_is_refused_at_once(tmp_path):
    classifier = Answering(Settings(data_root=tmp_path, predict_max_queue=1), {"answer": {}})
    classifier.gate.clear()
    first = threading.Thread(target=classify, args=(classifier, []))
    first.start()
    try:
        assert classifier.asked.wait(30)  # the first holds the queue's one place
        with pytest.raises(ClassifierBusy, match="1 predict requests are already queued"):
            classify(classifier, [])
    finally:
        classifier.gate.set()
        first.join(30)
    assert classify(classifier, []) == {}  # its place came free


@pytest.mark.parametrize(
    ("error", "raised"),
    [({"kind": "no_checkpoint", "message": "run abc has no checkpoint epoch-0007.keras"},
      NoSuchCheckpoint),
     ({"kind": "failed", "message": "exporting best.keras failed"}, ClassificationFailed)],
)  # fmt: skip
def test_the_predictors_errors_are_the_routes_exceptions(tmp_path, error, raised):
    classifier = Answering(Settings(data_root=tmp_path), {"error": error})
    with pytest.raises(raised, match=error["message"]):
        classify(classifier, [Upload("a.png", b"x")])


def test_an_exit_status_for_people():
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(1) == "exit 1" and describe_exit(None) == "still running"


def test_a_predictor_whose_socket_is_gone_is_replaced(tmp_path):
    classifier = Classifier(Settings(data_root=tmp_path))
    try:
        stats = asyncio.run(classifier.stats())  # starts the predictor
        first = classifier.predictor_pid()
        assert stats["pid"] == first and stats["loads"] == 0
        socket = classifier._process.socket
        socket.unlink()  # as a cleaner of /tmp would
        with pytest.raises(ClassificationFailed, match="could not be reached on its socket"):
            asyncio.run(classifier.stats())
        assert asyncio.run(classifier.stats())["pid"] != first and classifier.starts == 2
        assert not socket.parent.exists()
    finally:
        classifier.close()
