"""A run reads the dataset version it began with to its end: a resume after the dataset was
re-prepared reads the old version (its shards, its steps per epoch), the run's status says the
dataset changed, and once that version is pruned from the volume a resume is a clear 409."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from datavolume import DataRoot
from datavolume.datasets import publish
from jobkit.context import LocalContext
from jobkit.models import JobState
from jobkit.store import JobStore
from tests.trainer.support import tiny_config
from tests.utils.datasets import write_toy_dataset
from trainer_service.api.present import run_public
from trainer_service.engine import train as engine
from trainer_service.runs import operations
from trainer_service.runs.dataset import dataset_status

NAME = "pinned"


def publish_version(root: DataRoot, train_per_class: int, seed: int) -> Path:
    """Prepare ``NAME`` again (as the dataset service does: staging, then publish)."""
    source = root.path.parent / f"source-{seed}"
    write_toy_dataset(source, NAME, train_per_class=train_per_class, seed=seed)
    staging = root.staging(NAME)
    staging.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(DataRoot(source).dataset(NAME), staging)
    return publish(root, NAME, staging)


def test_a_run_keeps_its_dataset_version_until_it_is_gone(tmp_path):
    root = DataRoot(tmp_path / "data")
    first = publish_version(root, train_per_class=16, seed=0)  # 64 images: 4 steps of 16
    store = JobStore(tmp_path / "jobs.db")
    config = tiny_config(dataset=NAME, epochs=1)
    job = store.create("train", config.model_dump(mode="json"))
    run = root.run(job.id)

    result = engine.train(config, run.root, root.path, LocalContext())
    assert result.steps_per_epoch == 4
    record = json.loads(run.dataset_record.read_text())
    assert record["version"] == first.name and record["folder"] == root.relative(first)
    status = dataset_status(run, root)
    assert status["available"] and status["current"] and status["version"] == first.name

    publish_version(root, train_per_class=32, seed=1)  # re-prepared: 128 images, 8 steps
    status = dataset_status(run, root)
    assert status["available"] and not status["current"]

    # Asked for a second epoch, the run resumes on the version it began with.
    result = engine.train(tiny_config(dataset=NAME, epochs=2), run.root, root.path, LocalContext())
    assert result.resumed_from["epoch"] == 1 and result.steps_per_epoch == 4
    assert json.loads(run.dataset_record.read_text()) == record

    publish_version(root, train_per_class=16, seed=2)  # the volume keeps two versions only
    assert not first.exists()
    assert dataset_status(run, root) == {**status, "available": False}
    store.finish(job.id, JobState.FAILED)
    with pytest.raises(operations.DatasetVersionGone, match="is no longer on the volume"):
        operations.resume_run(store, None, root, job.id)
    assert store.get(job.id).state == JobState.FAILED  # nothing queued
    public = run_public(store.get(job.id), root)
    assert public.dataset.version == first.name and public.dataset.available is False


def test_a_new_run_reads_the_current_version(tmp_path):
    root = DataRoot(tmp_path / "data")
    publish_version(root, train_per_class=16, seed=0)
    current = publish_version(root, train_per_class=32, seed=1)
    run = root.run("fresh")
    result = engine.train(tiny_config(dataset=NAME, epochs=1), run.root, root.path, LocalContext())
    assert result.steps_per_epoch == 8
    assert json.loads(run.dataset_record.read_text())["version"] == current.name


def test_a_run_whose_end_is_not_recorded_yet_is_not_resumed(tmp_path):
    from datetime import UTC, datetime

    from jobkit.errors import JobStateConflict
    from jobkit.models import JobError, UnrecordedEnd

    store = JobStore(tmp_path / "jobs.db")
    job = store.create("train", tiny_config().model_dump(mode="json"))
    store.mark_running(job.id, 1)

    class Runner:  # what the runner knows and the full store cannot record yet
        def present(self, shown):
            end = UnrecordedEnd(worker="worker exited with code 4", reason="database or disk is "
                                "full", since=datetime.now(UTC))  # fmt: skip
            error = JobError(type="out_of_space", message="the volume is full")
            return shown.model_copy(update={"state": JobState.FAILED, "error": error,
                                            "unrecorded_end": end})  # fmt: skip

    with pytest.raises(JobStateConflict, match=r"not recorded yet \(database or disk is full"):
        operations.resume_run(store, Runner(), DataRoot(tmp_path), job.id)
    assert store.get(job.id).state == JobState.RUNNING  # nothing queued
