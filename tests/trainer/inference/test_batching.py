"""Requests that arrive together share one model run, each answered with its own rows; a batch
holds one model's requests and at most ``max_batch`` images; a failed run answers its requests
with the error and the next batch runs."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from trainer_service.inference.batching import Batcher


class Model:
    """Logits = each image's first value; every run recorded; runs wait for ``gate``."""

    def __init__(self, name: str = "m") -> None:
        self.name = name
        self.gate = threading.Event()
        self.gate.set()
        self.runs: list[list[int]] = []

    def __call__(self, model: Model, images: np.ndarray) -> np.ndarray:
        assert model is self
        self.gate.wait(30)
        self.runs.append([int(i) for i in images[:, 0]])
        if (images[:, 0] < 0).any():
            raise ValueError("a negative image")
        return images[:, :1] * 10.0


def images(*values: int) -> np.ndarray:
    return np.array([[v, 0] for v in values])


def run_all(batcher: Batcher, requests: list, announced: bool = False) -> list:
    """Submit every request from a thread of its own, 20 ms apart; their answers in order."""
    answers: list = [None] * len(requests)

    def ask(i: int) -> None:
        try:
            answers[i] = batcher.logits(*requests[i], timeout_s=30, announced=announced)
        except Exception as exc:
            answers[i] = exc

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
        time.sleep(0.02)
    for thread in threads:
        thread.join(30)
    return answers


def test_requests_waiting_together_run_as_one_batch_each_with_its_rows():
    model = Model()

    def run(m, x):
        return model(m, x)

    batcher = Batcher(run, max_batch=8, wait_s=0)
    model.gate.clear()  # the first request's run waits: the others queue behind it
    answers: list = []
    thread = threading.Thread(
        target=lambda: answers.extend(run_all(batcher, [(model, images(i, i)) for i in range(4)]))
    )
    thread.start()
    time.sleep(0.3)
    model.gate.set()
    thread.join(30)
    assert model.runs == [[0, 0], [1, 1, 2, 2, 3, 3]]
    for i, logits in enumerate(answers):
        np.testing.assert_array_equal(logits, [[10.0 * i], [10.0 * i]])
    assert (batcher.batches, batcher.images, batcher.largest) == (2, 8, 6)


def test_a_batch_holds_one_models_requests_up_to_max_batch_images():
    a, b = Model("a"), Model("b")

    def run(m, x):
        return m(m, x)

    batcher = Batcher(run, max_batch=3, wait_s=0)
    a.gate.clear()
    requests = [(a, images(0)), (a, images(1, 1)), (b, images(2)), (a, images(3)),
                (a, images(4, 4))]  # fmt: skip
    answers: list = []
    thread = threading.Thread(target=lambda: answers.extend(run_all(batcher, requests)))
    thread.start()
    time.sleep(0.3)
    a.gate.set()
    thread.join(30)
    # a's first request ran alone; then the oldest waiting (a, 2 images) took a's next one that
    # fits (1 image); b's; then a's last
    assert a.runs == [[0], [1, 1, 3], [4, 4]] and b.runs == [[2]]
    assert [len(x) for x in answers] == [1, 2, 1, 1, 2]


def test_the_first_request_waits_for_an_announced_one_to_join_it():
    model = Model()
    batcher = Batcher(model, max_batch=8, wait_s=5)
    batcher.announce()  # its images are being decoded
    first: list = []
    thread = threading.Thread(target=lambda: first.append(batcher.logits(model, images(1), 30)))
    thread.start()
    time.sleep(0.2)
    second = batcher.logits(model, images(2), 30, announced=True)
    thread.join(30)
    assert model.runs == [[1, 2]] and (len(first[0]), len(second)) == (1, 1)


def test_a_request_alone_waits_for_nothing():
    model = Model()
    batcher = Batcher(model, max_batch=8, wait_s=30)
    started = time.monotonic()
    batcher.logits(model, images(1), 30)
    batcher.announce()
    batcher.withdraw()  # announced, then it had no image to run
    batcher.logits(model, images(2), 30)
    assert time.monotonic() - started < 5 and model.runs == [[1], [2]]


def test_a_full_batch_does_not_wait():
    model = Model()
    batcher = Batcher(model, max_batch=2, wait_s=30)
    for _ in range(3):
        batcher.announce()
    started = time.monotonic()
    run_all(batcher, [(model, images(1)), (model, images(2))], announced=True)
    assert time.monotonic() - started < 5 and model.runs == [[1, 2]]


def test_a_failed_run_answers_its_requests_and_the_next_batch_runs():
    model = Model()
    batcher = Batcher(model, max_batch=8, wait_s=5)
    batcher.announce()
    batcher.announce()
    first, second = run_all(batcher, [(model, images(1)), (model, images(-1))], announced=True)
    assert isinstance(first, ValueError) and isinstance(second, ValueError)
    np.testing.assert_array_equal(batcher.logits(model, images(5), 30), [[50.0]])


def test_a_request_that_gets_no_answer_in_time_raises_timeout():
    model = Model()
    model.gate.clear()
    batcher = Batcher(model, max_batch=8, wait_s=0)
    with pytest.raises(TimeoutError, match=r"within 0\.2 s"):
        batcher.logits(model, images(1), timeout_s=0.2)
    model.gate.set()
