"""Fixtures for the jobkit tests: a store in tmp_path and runners running sample_jobs."""

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from jobkit.runner import JobRunner
from jobkit.store import JobStore
from tests.jobkit.jobkit_helpers import REPO_ROOT, TARGETS


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    return JobStore(tmp_path / "state" / "jobs.db")


@pytest.fixture
def make_runner(store: JobStore, tmp_path: Path) -> Iterator[Callable[..., JobRunner]]:
    """Factory for runners over ``store`` that run sample_jobs; stopped after the test."""
    runners: list[JobRunner] = []

    def make(
        *, max_concurrent: int = 2, cancel_grace_s: float = 5.0, nice: int = 0, **options
    ) -> JobRunner:
        runner = JobRunner(
            store,
            targets=TARGETS,
            log_dir=tmp_path / "state" / "logs",
            max_concurrent=max_concurrent,
            cancel_grace_s=cancel_grace_s,
            env={"PYTHONPATH": str(REPO_ROOT)},
            nice=nice,
            **options,
        )
        runners.append(runner)
        return runner

    yield make
    for runner in runners:
        runner.stop()
