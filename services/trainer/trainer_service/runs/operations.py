"""Run operations behind the routes: check a request, resume a run.

No HTTP here: problems are raised as :class:`InvalidRunRequest` (the routes turn it into a 422
naming the field) or as jobkit errors (404 unknown run, 409 wrong state).
"""

from __future__ import annotations

import zipfile

from datavolume.datasets import DatasetUnavailable
from datavolume.layout import DataRoot, OutsideRoot
from jobkit.errors import JobStateConflict
from jobkit.models import JobPublic, JobState
from jobkit.runner import JobRunner
from jobkit.store import JobStore
from shard_format.schema import TRAIN
from trainer_service.model.architecture import check_shape
from trainer_service.runs import resume
from trainer_service.runs.config import TrainConfig
from trainer_service.runs.dataset import pinned_folder, usable_dataset

RESUMABLE = (JobState.INTERRUPTED, JobState.CANCELLED, JobState.FAILED)


class DatasetVersionGone(JobStateConflict):
    """The dataset version a run began with is no longer on the volume: it cannot resume (a
    409, like other states that forbid a resume)."""


class InvalidRunRequest(ValueError):
    """A well-formed request that names something unusable (``field`` like "body.dataset")."""

    def __init__(self, field: str, message: str, slug: str = "validation-error") -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.slug = slug


def check_dataset(root: DataRoot, name: str):
    """The dataset's metadata, if a run can train on it (:func:`usable_dataset`)."""
    try:
        return usable_dataset(root, name).metadata
    except DatasetUnavailable as exc:
        raise InvalidRunRequest("body.dataset", exc.message, exc.slug) from None


def check_init_checkpoint(root: DataRoot, relative: str | None) -> None:
    """``init_checkpoint`` must be an existing file inside the data root."""
    if relative is None:
        return
    try:
        path = root.resolve(relative)
    except OutsideRoot as exc:
        raise InvalidRunRequest("body.init_checkpoint", str(exc)) from None
    if not path.is_file():
        raise InvalidRunRequest(
            "body.init_checkpoint", f"no checkpoint file {relative!r} under the data root"
        )
    # A .keras file is a zip holding the model's config: anything else fails the run later.
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError):
        names = set()
    if "config.json" not in names:
        raise InvalidRunRequest(
            "body.init_checkpoint", f"{relative!r} is not a Keras .keras checkpoint"
        )


def check_devices(config: TrainConfig, slots: list[str]) -> None:
    """A run may not ask for more devices than the service has."""
    if config.devices > len(slots):
        raise InvalidRunRequest(
            "body.devices",
            f"the run asks for {config.devices} devices; this service has {len(slots)} "
            f"({', '.join(slots)})",
        )


def check_request(root: DataRoot, config: TrainConfig) -> None:
    """Everything the dataset's metadata and the volume let us check before a 202."""
    metadata = check_dataset(root, config.dataset)
    train_records = metadata.splits[TRAIN].num_records
    if config.batch_size > train_records:
        raise InvalidRunRequest(
            "body.batch_size",
            f"batch_size {config.batch_size} is larger than the {train_records} train images "
            f"of {config.dataset!r}",
        )
    try:
        check_shape(config.filters, config.levels, metadata.num_classes)
    except ValueError as exc:
        raise InvalidRunRequest("body.levels", str(exc)) from None
    check_init_checkpoint(root, config.init_checkpoint)


# -- resuming --------------------------------------------------------------------------------


def resume_run(
    store: JobStore,
    runner: JobRunner | None,
    root: DataRoot,
    run_id: str,
    checkpoint: str | None = None,
) -> JobPublic:
    """Queue an interrupted, cancelled or failed run again (same id, same config).

    Its worker continues from the latest checkpoint, or from ``checkpoint`` if given. Raises
    ``JobNotFound``, ``JobStateConflict`` (409) or :class:`InvalidRunRequest`. A run whose
    worker has ended but whose end the store could not record yet (a full volume) is a 409 that
    says so.
    """
    job = store.require(run_id)
    if runner is not None:
        job = runner.present(job)
    if job.unrecorded_end is not None:
        raise JobStateConflict(
            run_id,
            job.state,
            f"run {run_id} has ended ({job.state}) but its end is not recorded yet "
            f"({job.unrecorded_end.reason}); free space on the volume, then resume it",
        )
    if job.state not in RESUMABLE:
        raise JobStateConflict(
            run_id,
            job.state,
            f"run {run_id} is {job.state}; only an interrupted, cancelled or failed run can be "
            "resumed",
        )
    if runner is not None and run_id in runner.running_job_ids():
        # Its state is already final but its worker is still saving or exiting: a new worker
        # now would write the same run folder beside it.
        raise JobStateConflict(
            run_id,
            job.state,
            f"run {run_id} is {job.state} but its worker is still exiting; retry in a few seconds",
        )
    run = root.run(run_id)
    pinned = pinned_folder(run)
    if pinned is not None:
        try:
            usable_dataset(root, job.request.get("dataset", ""), pinned)
        except DatasetUnavailable as exc:
            raise DatasetVersionGone(
                run_id,
                job.state,
                f"run {run_id} cannot resume: {exc.message}; start a new run from its "
                "checkpoint (init_checkpoint) instead",
            ) from None
    if checkpoint is not None:
        try:
            resume.rewind(run, checkpoint)
        except resume.CannotResume as exc:
            raise InvalidRunRequest("body.checkpoint", str(exc)) from None
    job = store.reset_for_retry(run_id)
    if runner is not None:
        runner.wake()
    return job
