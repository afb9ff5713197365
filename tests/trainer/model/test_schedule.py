"""The learning-rate schedule: staircase decay at epoch boundaries, cosine, warm-up, resume."""

import keras
import numpy as np
import pytest

from trainer_service.engine.train import schedule_for
from trainer_service.model.schedule import EpochSchedule
from trainer_service.runs.config import TrainConfig

S = 781  # steps per epoch of Tiny ImageNet at batch 128 (100,000 // 128)


def lr(schedule: EpochSchedule, step: int) -> float:
    return float(keras.ops.convert_to_numpy(schedule(step)))


def test_homework_step_schedule_drops_at_epoch_64():
    schedule = schedule_for(TrainConfig(dataset="toy"), S)
    assert lr(schedule, 0) == pytest.approx(0.01)
    assert lr(schedule, 64 * S - 1) == pytest.approx(0.01)  # last step of epoch 64 (1-based)
    assert lr(schedule, 64 * S) == pytest.approx(0.001)  # first step of epoch 65
    assert lr(schedule, 72 * S - 1) == pytest.approx(0.001)


def test_several_decays_compound():
    schedule = EpochSchedule(0.1, 10, "step", decay_epochs=[2, 4], decay_factor=0.5)
    values = [lr(schedule, e * 10) for e in range(6)]
    assert values == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025])


def test_linear_warmup_then_base():
    schedule = EpochSchedule(0.1, 10, "constant", warmup_epochs=2)  # 20 warm-up steps
    assert lr(schedule, 0) == pytest.approx(0.1 / 20)
    assert lr(schedule, 9) == pytest.approx(0.1 * 10 / 20)
    assert lr(schedule, 19) == pytest.approx(0.1)
    assert lr(schedule, 50) == pytest.approx(0.1)
    ramp = [lr(schedule, s) for s in range(20)]
    assert np.all(np.diff(ramp) > 0)


def test_cosine_from_the_end_of_warmup_to_zero():
    schedule = EpochSchedule(0.2, 10, "cosine", warmup_epochs=1, total_epochs=11)
    assert lr(schedule, 10) == pytest.approx(0.2)  # warm-up over, cosine starts at the peak
    assert lr(schedule, 60) == pytest.approx(0.1)  # half way through the 100 cosine steps
    assert lr(schedule, 109) == pytest.approx(0.2 * 0.5 * (1 + np.cos(np.pi * 0.99)), rel=1e-4)
    assert lr(schedule, 110) == pytest.approx(0.0, abs=1e-7)
    assert 0 < lr(schedule, 109) < 1e-3


def test_serializable_inside_an_optimizer():
    """The optimizer config (saved in every .keras checkpoint) rebuilds the same schedule."""
    schedule = EpochSchedule(0.05, 7, "cosine", warmup_epochs=0.5, total_epochs=3)
    optimizer = keras.optimizers.SGD(learning_rate=schedule, momentum=0.9)
    config = keras.saving.serialize_keras_object(optimizer)
    restored = keras.saving.deserialize_keras_object(config)
    restored.build([keras.Variable(np.zeros(2, "float32"))])
    for step in (0, 3, 10, 20):
        restored.iterations.assign(step)
        assert float(restored.learning_rate) == pytest.approx(lr(schedule, step))


def test_optimizer_rate_follows_iterations():
    """The schedule position is optimizer.iterations, which checkpoints carry."""
    optimizer = keras.optimizers.SGD(learning_rate=EpochSchedule(0.01, 5, "step", [2]))
    optimizer.build([keras.Variable(np.zeros(2, "float32"))])
    assert float(optimizer.learning_rate) == pytest.approx(0.01)
    optimizer.iterations.assign(10)
    assert float(optimizer.learning_rate) == pytest.approx(0.001)


def test_bad_arguments():
    with pytest.raises(ValueError, match="kind"):
        EpochSchedule(0.1, 10, "poly")
    with pytest.raises(ValueError, match="steps_per_epoch"):
        EpochSchedule(0.1, 0)


def test_linear_decays_to_zero_after_the_warmup():
    schedule = EpochSchedule(0.4, 10, "linear", warmup_epochs=1, total_epochs=11)
    assert lr(schedule, 0) == pytest.approx(0.4 / 10)
    assert lr(schedule, 10) == pytest.approx(0.4)  # the peak: a one-cycle triangle
    assert lr(schedule, 60) == pytest.approx(0.2)
    assert lr(schedule, 110) == pytest.approx(0.0, abs=1e-7)
    assert np.all(np.diff([lr(schedule, s) for s in range(10, 111)]) < 0)


def test_warmup_in_steps_wins_over_epochs():
    schedule = EpochSchedule(0.1, 10, "constant", warmup_epochs=3, warmup_steps=4)
    assert schedule.warmup_steps == 4
    assert lr(schedule, 0) == pytest.approx(0.1 / 4)
    assert lr(schedule, 3) == pytest.approx(0.1)
    restored = EpochSchedule.from_config(schedule.get_config())
    assert restored.warmup_steps == 4


def test_a_schedule_saved_before_warmup_steps_existed_still_loads():
    config = EpochSchedule(0.1, 10, "cosine", warmup_epochs=1).get_config()
    del config["warmup_steps"]
    assert EpochSchedule.from_config(config).warmup_steps == 10
