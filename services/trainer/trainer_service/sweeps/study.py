"""A sweep's Optuna study: where it is stored, how it samples and prunes, the lock around asking
for a trial, and the leases that say which trainer services are alive.

**Storage.** By default each sweep's study is Optuna's journal file storage in the sweep's folder
on the shared volume (``JournalStorage(JournalFileBackend(...))``: one append-only file, made for
several processes and hosts on a shared file system, with Optuna's ``JournalFileOpenLock``). With
``sweep_storage`` set to a database URL (PostgreSQL for labs that have one) every study lives in
that database (``RDBStorage``). Either outlives the service: the study holds the sweep's state
(user attributes), its trials, their parameters, intermediate values and results.

**Several trainer services, one study.** A service asks for a trial only under the sweep's ask
lock (a ``JournalFileOpenLock`` in the sweep's folder, so on the shared volume whatever the
storage), after counting the trials every service started: no two services take the same trial,
and ``max_trials`` and ``max_concurrent`` hold across them. Each trial records the service that
runs it (``host``: :func:`instance_id`, kept in the service's state folder so it survives
restarts). Each service renews a lease (a file's time) on every pass; a trial whose service's
lease is older than the grace is failed by whichever service sees it, and replaced.

**Samplers and pruners** are Optuna's own: ``TPESampler`` (``constant_liar`` for concurrent
trials), ``RandomSampler``, ``GridSampler``; ``MedianPruner``, ``HyperbandPruner``,
``NopPruner``. A sampler is made anew for each trial with the seed ``seed + trials so far``
(under the lock), so the services draw different values and a sweep repeats with its seed.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock, JournalStorage
from optuna.trial import TrialState

from datavolume.files import atomic_write_text
from datavolume.layout import SweepFolder
from trainer_service.runs.config import TrainConfig
from trainer_service.sweeps.spec import SweepRequest

optuna.logging.set_verbosity(optuna.logging.WARNING)

#: A held ask lock older than this is taken over (its holder died while asking).
LOCK_GRACE_S = 30

#: The study's user attributes that hold the sweep's own state.
STATE, REASON, CREATED_AT, ENDED_AT, STOP_REQUESTED = (
    "state", "reason", "created_at", "ended_at", "stop_requested")  # fmt: skip
#: A trial's user attributes: the run that trains it, the service that runs it, why it failed.
RUN_ID, HOST, FAILURE = "run_id", "host", "failure"

ACTIVE = (TrialState.RUNNING, TrialState.WAITING)
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def storage_for(folder: SweepFolder, url: str | None) -> optuna.storages.BaseStorage:
    """The study's storage: the journal in ``folder``, or the database at ``url``."""
    if url:
        return optuna.storages.RDBStorage(url)
    folder.root.mkdir(parents=True, exist_ok=True)
    path = str(folder.journal)
    return JournalStorage(JournalFileBackend(path, lock_obj=JournalFileOpenLock(path)))


def distributions(spec: SweepRequest) -> dict[str, BaseDistribution]:
    """Each field of the space as an Optuna distribution (int or float by the run field)."""
    out: dict[str, BaseDistribution] = {}
    for name, d in spec.space.items():
        if d.choices is not None:
            out[name] = CategoricalDistribution(d.choices)
        elif TrainConfig.model_fields[name].annotation is int:
            out[name] = IntDistribution(int(d.low), int(d.high), log=d.log)  # type: ignore[arg-type]
        else:
            out[name] = FloatDistribution(d.low, d.high, log=d.log)  # type: ignore[arg-type]
    return out


def sampler_for(spec: SweepRequest, trials_so_far: int) -> optuna.samplers.BaseSampler:
    seed = spec.seed + trials_so_far
    if spec.sampler == "grid":
        return optuna.samplers.GridSampler(spec.grid(), seed=spec.seed)
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(
        seed=seed, n_startup_trials=spec.startup_trials, constant_liar=True
    )


def pruner_for(spec: SweepRequest, epochs: int) -> optuna.pruners.BasePruner:
    """The pruner; a trial's steps are its epochs (``epochs``: the most a trial trains)."""
    if spec.pruner == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=spec.startup_trials, n_warmup_steps=spec.prune_after_epochs
        )
    if spec.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=max(1, spec.prune_after_epochs), max_resource=max(epochs, 2)
        )
    return optuna.pruners.NopPruner()


def max_epochs(spec: SweepRequest) -> int:
    """The most epochs a trial of the sweep trains (the base's, or the space's largest)."""
    base = TrainConfig.model_validate({**spec.base, "dataset": spec.dataset}).epochs
    dimension = spec.space.get("epochs")
    if dimension is None:
        return base
    if dimension.choices is None:
        return int(dimension.high)  # type: ignore[arg-type]
    return max(int(v) for v in dimension.choices)


def load(
    spec: SweepRequest, storage: optuna.storages.BaseStorage, asking: int | None = None
) -> optuna.Study:
    """The sweep's study with its pruner, and, to ask for trial ``asking`` (the trials so far),
    its sampler (a ``Study`` is cheap: the storage holds the state). Without ``asking`` a plain
    random sampler stands in: a grid sampler stops the study when its grid is used up, which
    only works inside ``Study.optimize``; here the sweep counts its trials itself."""
    sampler = sampler_for(spec, asking) if asking is not None else optuna.samplers.RandomSampler()
    return optuna.load_study(
        study_name=spec.name,
        storage=storage,
        sampler=sampler,
        pruner=pruner_for(spec, max_epochs(spec)),
    )


def create(spec: SweepRequest, storage: optuna.storages.BaseStorage) -> optuna.Study:
    """The sweep's study, made now (or the one a first attempt left), in state ``running``."""
    study = optuna.create_study(
        study_name=spec.name, storage=storage, direction=spec.direction, load_if_exists=True
    )
    if STATE not in study.user_attrs:
        study.set_user_attr(CREATED_AT, now())
        study.set_user_attr(STATE, "running")
    return study


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def age_s(stamp: str) -> float:
    return (datetime.now(UTC) - datetime.fromisoformat(stamp)).total_seconds()


@contextlib.contextmanager
def ask_lock(folder: SweepFolder) -> Iterator[None]:
    """Held while a service counts the trials and asks for one (see the module docstring)."""
    folder.root.mkdir(parents=True, exist_ok=True)
    lock = JournalFileOpenLock(str(folder.ask_lock), grace_period=LOCK_GRACE_S)
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


# -- which services are alive ----------------------------------------------------------------


def instance_id(state_dir: Path) -> str:
    """This service's name in the studies it joins: made once, kept in its state folder."""
    path = state_dir / "trainer-instance"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        name = f"trainer-{secrets.token_hex(4)}"
        state_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, name + "\n")
        return path.read_text().strip()


def renew_lease(hosts: Path, instance: str) -> None:
    """Say this service is alive (the lease file's modification time)."""
    hosts.mkdir(parents=True, exist_ok=True)
    (hosts / instance).touch()  # its modification time: now


def lease_expired(hosts: Path, instance: str, grace_s: float) -> bool:
    """Whether ``instance`` has not renewed its lease for ``grace_s`` (never renewed: expired)."""
    try:
        return time.time() - (hosts / instance).stat().st_mtime > grace_s
    except FileNotFoundError:
        return True
