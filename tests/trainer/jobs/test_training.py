"""The job function's contract with the jobkit worker (the training itself: engine/test_train)."""

import pytest

from jobkit.errors import JobFailed
from trainer_service.jobs import TRAINING_TARGET
from trainer_service.jobs.training import run_training
from trainer_service.settings import Settings


class Ctx:
    job_id = "abc123"
    request = {"dataset": "toy", "batch_size": 0}


def test_an_invalid_request_fails_as_invalid_input():
    with pytest.raises(JobFailed) as info:
        run_training(Ctx())
    assert info.value.type == "invalid_input" and "batch_size" in info.value.message


def test_target_is_importable():
    from jobkit.worker import load_target

    assert load_target(TRAINING_TARGET) is run_training


def test_worker_environment_carries_the_settings_and_backend(tmp_path):
    env = Settings(data_root=tmp_path, keras_backend="jax", api_token="t").worker_env()
    assert env["TRAINER_DATA_ROOT"] == str(tmp_path)
    assert env["KERAS_BACKEND"] == "jax" and env["TRAINER_API_TOKEN"] == "t"
