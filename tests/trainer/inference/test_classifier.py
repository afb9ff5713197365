"""The classify process's command and environment, and the names uploads are answered by."""

from __future__ import annotations

import pytest

from trainer_service.inference.classifier import CLASSIFY_ENV, Classifier, safe_name
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


def test_the_process_runs_on_the_cpu_below_training(tmp_path):
    settings = Settings(
        data_root=tmp_path,
        predict_threads=3,
        predict_nice=17,
        keras_backend="jax",
        predict_keras_backend="tensorflow",
    )
    classifier = Classifier(settings)
    command = classifier.command("abc", "best", [tmp_path / "x.png"])
    assert command[1:3] == ["-m", "trainer_service.inference.classify"]

    def option(flag: str) -> str:
        return command[command.index(flag) + 1]

    assert option("--data-root") == str(tmp_path) and option("--run") == "abc"
    assert option("--checkpoint") == "best"
    assert option("--threads") == "3" and option("--nice") == "17"
    assert command[-1] == str(tmp_path / "x.png") and "--json" in command
    env = classifier.environment()
    assert env["JAX_PLATFORMS"] == "cpu" and env["CUDA_VISIBLE_DEVICES"] == ""
    assert CLASSIFY_ENV.items() <= env.items()
    assert env["KERAS_BACKEND"] == "tensorflow"  # the predict process's, not the workers'
    assert env["TRAINER_KERAS_BACKEND"] == "jax"
