"""Resume: rewinding to a chosen checkpoint, and where a run continues from."""

import json

import pytest

from datavolume.runs import RunFolder
from tests.trainer.runs.conftest import run
from trainer_service.runs import checkpoints, resume
from trainer_service.runs.history import append_epoch, read_history


def test_rewind_discards_later_epochs(tmp_path, model):
    paths = RunFolder(tmp_path)
    run(paths, model, [0.3, 0.5, 0.9, 0.4], keep=5)
    latest = resume.rewind_to_epoch(paths, 2)
    assert (latest.epoch, latest.step, latest.file) == (2, 20, "epoch-0002.keras")
    assert list(checkpoints.epoch_files(paths)) == [1, 2]
    assert [r["epoch"] for r in read_history(paths)] == [1, 2]
    # best came from epoch 3, which is gone: the best remaining epoch takes its place
    assert checkpoints.read_best(paths) == {"epoch": 2, "val_accuracy": 0.5, "step": 20}
    assert json.loads(paths.latest.read_text())["epoch"] == 2
    with pytest.raises(FileNotFoundError):
        resume.rewind_to_epoch(paths, 3)


@pytest.mark.parametrize(("name", "epoch"), [("2", 2), ("epoch-0001.keras", 1), ("best", 3)])
def test_rewind_by_name(tmp_path, model, name, epoch):
    paths = RunFolder(tmp_path)
    run(paths, model, [0.3, 0.5, 0.9, 0.4], keep=5)
    resume.rewind(paths, name)
    assert checkpoints.read_latest(paths).epoch == epoch
    assert max(checkpoints.epoch_files(paths)) == epoch


def test_rewind_to_latest_changes_nothing(tmp_path, model):
    paths = RunFolder(tmp_path)
    run(paths, model, [0.3, 0.5], keep=5)
    resume.rewind(paths, "latest")
    assert checkpoints.read_latest(paths).epoch == 2


@pytest.mark.parametrize(
    "name", ["9", "epoch-0009.keras", "1" * 4301, "epoch-" + "1" * 4301 + ".keras"]
)
def test_rewind_to_a_checkpoint_that_is_not_there_is_refused(tmp_path, model, name):
    paths = RunFolder(tmp_path)
    run(paths, model, [0.3], keep=5)
    with pytest.raises(resume.CannotResume):
        resume.rewind(paths, name)


def test_a_new_run_starts_fresh(tmp_path):
    assert resume.start_point(RunFolder(tmp_path)) is None


def test_a_run_continues_after_its_latest_epoch_and_redoes_unrecorded_rows(tmp_path, model):
    paths = RunFolder(tmp_path)
    run(paths, model, [0.3, 0.5], keep=5)
    append_epoch(paths, {"epoch": 3, "step": 30})  # recorded, killed before its checkpoint
    start = resume.start_point(paths)
    assert (start.epoch, start.weights, start.partial) == (2, paths.epoch_checkpoint(2), False)
    assert [r["epoch"] for r in read_history(paths)] == [1, 2]


def test_a_run_stopped_mid_epoch_redoes_it_from_the_epoch_before(tmp_path, model):
    paths = RunFolder(tmp_path)
    run(paths, model, [0.3, 0.5], keep=5)
    checkpoints.save_partial(model, paths, 2, 27, steps_per_epoch=10)
    start = resume.start_point(paths)
    assert (start.epoch, start.weights, start.partial) == (2, paths.epoch_checkpoint(2), True)
    assert start.steps_per_epoch == 10


def test_a_run_stopped_in_its_first_epoch_starts_from_the_fresh_model(tmp_path, model):
    paths = RunFolder(tmp_path)
    checkpoints.save_partial(model, paths, 0, 7, steps_per_epoch=10)
    start = resume.start_point(paths)
    assert (start.epoch, start.weights, start.partial) == (0, None, True)


def test_a_missing_checkpoint_is_reported(tmp_path, model):
    paths = RunFolder(tmp_path)
    run(paths, model, [0.3, 0.5], keep=5)
    checkpoints.save_partial(model, paths, 2, 27)
    paths.epoch_checkpoint(2).unlink()
    with pytest.raises(resume.CannotResume, match="epoch 2 is missing"):
        resume.start_point(paths)
    assert json.loads(paths.latest.read_text())["partial"] is True
