"""Write the shards of a dataset: plan, parallel write, verified resume.

Plan. Each split's file list is sorted, then shuffled with ``numpy`` seeded by
``(shuffle_seed, split index)``, and cut into contiguous chunks, one per shard, so every shard
mixes classes and the same input and seed always give the same shards.

Write. Each shard is written by a worker process (``spawn``: TensorFlow is imported there)
to ``<final>.tmp-<pid>`` and fsynced; a sidecar ``.write-state/<final>.json`` records the
shard's task key, record count, size and SHA-256; then the shard is renamed to its final name.
``shard_format.records.serialize`` is deterministic, so the bytes do not depend on the process
that wrote them.

Resume. Before writing, a shard is kept when its sidecar has the same task key (a hash of the
writer version, the shard's name and every item's path, label, wnid, size and mtime) and the
file's size and SHA-256 match the sidecar. Every other shard file, temp file and sidecar of the
dataset is deleted and rewritten, so the final name of a shard always means "complete".
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
import queue as queue_lib
import re
import signal
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from dataset_service.errors import BadImage, ShardCountError
from dataset_service.files import file_digest, fsync_dir, read_json
from dataset_service.images import load_jpeg
from jobkit.files import atomic_write_json
from shard_format.schema import SPLITS, parse_shard_file_name, shard_file_name

#: Bump whenever the bytes written for the same input change.
WRITER_VERSION = 1
STATE_DIR = ".write-state"
REPORT_EVERY = 64
POLL_S = 0.2
PARENT_POLL_S = 1.0
_TMP_RE = re.compile(r"\.tmp-\d+$")

Progress = Callable[[int, int | None], None]


@dataclass(frozen=True)
class Item:
    """One source image and the record it becomes."""

    rel: str  # path under the tree root
    label: int
    wnid: str
    file_name: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class ShardTask:
    split: str
    index: int
    count: int
    file_name: str
    root: str  # tree root the items' paths are relative to
    items: tuple[Item, ...]
    skip_bad: bool

    def key(self) -> str:
        """Identity of the shard's content: what a kept shard must have been written from."""
        payload = {
            "writer_version": WRITER_VERSION,
            "file_name": self.file_name,
            "skip_bad": self.skip_bad,
            "items": [
                [i.rel, i.label, i.wnid, i.file_name, i.size, i.mtime_ns] for i in self.items
            ],
        }
        return hashlib.sha256(json.dumps(payload, separators=(",", ":")).encode()).hexdigest()


@dataclass
class ShardResult:
    split: str
    index: int
    file_name: str
    num_records: int
    num_bytes: int
    sha256: str
    key: str
    re_encoded: list[str] = field(default_factory=list)  # item rel paths
    skipped: list[str] = field(default_factory=list)  # "<rel>: <reason>"
    reused: bool = False


# ---------------------------------------------------------------------------- planning


def shard_count_for(num_bytes: int, target_shard_bytes: int, num_items: int) -> int:
    """Shards for a split of ``num_bytes``: about ``target_shard_bytes`` each, at least one,
    never more than the images."""
    return max(1, min(num_items, math.ceil(num_bytes / target_shard_bytes)))


def shuffled(items: Iterable[Item], split: str, seed: int) -> list[Item]:
    """The split's items in a fixed pseudo-random order (independent of listing order)."""
    ordered = sorted(items, key=lambda i: i.rel)
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    return [ordered[j] for j in rng.permutation(len(ordered))]


def plan_split(
    name: str,
    split: str,
    items: list[Item],
    *,
    root: Path,
    num_shards: int,
    seed: int,
    skip_bad: bool,
) -> list[ShardTask]:
    """Shuffle ``items`` and cut them into ``num_shards`` contiguous, near-equal chunks."""
    if num_shards > len(items):
        raise ShardCountError(
            f"shards.{split}={num_shards} is more than the {len(items)} images of the split"
        )
    order = shuffled(items, split, seed)
    n = len(order)
    return [
        ShardTask(
            split=split,
            index=k,
            count=num_shards,
            file_name=shard_file_name(name, split, k, num_shards),
            root=str(root),
            items=tuple(order[k * n // num_shards : (k + 1) * n // num_shards]),
            skip_bad=skip_bad,
        )
        for k in range(num_shards)
    ]


# ---------------------------------------------------------------------------- one shard

_progress_queue: multiprocessing.Queue | None = None


def _init_pool_worker(progress_queue: multiprocessing.Queue) -> None:
    global _progress_queue
    _progress_queue = progress_queue
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # A cancel SIGTERMs the whole process group; the parent notices it, then kills the pool.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    """Pool workers wait on a queue forever if the parent dies (SIGKILL): exit with it."""
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_S)
    os._exit(1)


def sidecar_path(out_dir: Path, file_name: str) -> Path:
    return Path(out_dir) / STATE_DIR / f"{file_name}.json"


def write_shard(
    task: ShardTask, out_dir: str, report: Callable[[str, int], None] | None = None
) -> ShardResult:
    """Write one shard atomically and record its sidecar; returns what was written.

    ``report(file_name, items_done)`` is called every few records (in a pool worker, the
    progress queue is used instead). Raises :class:`BadImage` unless ``task.skip_bad``.
    """
    import tensorflow as tf

    from shard_format.records import serialize

    if report is None and _progress_queue is not None:
        q = _progress_queue

        def report(file_name: str, done: int) -> None:
            q.put((file_name, done))

    out = Path(out_dir)
    final = out / task.file_name
    tmp = out / f"{task.file_name}.tmp-{os.getpid()}"
    root = Path(task.root)
    re_encoded: list[str] = []
    skipped: list[str] = []
    num_records = 0
    try:
        with tf.io.TFRecordWriter(str(tmp)) as w:
            for i, item in enumerate(task.items, start=1):
                try:
                    image = load_jpeg(root / item.rel)
                except BadImage as exc:
                    if not task.skip_bad:
                        raise BadImage(item.rel, exc.reason) from None
                    skipped.append(f"{item.rel}: {exc.reason}")
                    continue
                if image.re_encoded:
                    re_encoded.append(item.rel)
                w.write(serialize(image.data, item.label, item.wnid, item.file_name))
                num_records += 1
                if report is not None and i % REPORT_EVERY == 0:
                    report(task.file_name, i)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        result = ShardResult(
            split=task.split,
            index=task.index,
            file_name=task.file_name,
            num_records=num_records,
            num_bytes=tmp.stat().st_size,
            sha256=file_digest(tmp),
            key=task.key(),
            re_encoded=re_encoded,
            skipped=skipped,
        )
        # Sidecar first, then the rename: a final shard name always has its sidecar. (A sidecar
        # whose shard never got its final name is ignored by the resume check.)
        sidecar = sidecar_path(out, task.file_name)
        sidecar.parent.mkdir(exist_ok=True)
        atomic_write_json(sidecar, asdict(result))
        os.replace(tmp, final)
        fsync_dir(out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if report is not None:
        report(task.file_name, len(task.items))
    return result


# ---------------------------------------------------------------------------- resume


def verified_shard(task: ShardTask, out_dir: Path) -> ShardResult | None:
    """The recorded result of a complete shard written from the same task, or None."""
    final = Path(out_dir) / task.file_name
    raw = read_json(sidecar_path(out_dir, task.file_name))
    if not isinstance(raw, dict) or raw.get("key") != task.key() or not final.is_file():
        return None
    try:
        result = ShardResult(**raw)
    except TypeError:
        return None
    if final.stat().st_size != result.num_bytes or file_digest(final) != result.sha256:
        return None
    result.reused = True
    return result


def clean_output(out_dir: Path, name: str, keep: set[str]) -> None:
    """Delete temp files, and shard files and sidecars of ``name`` not in ``keep``."""
    out_dir = Path(out_dir)
    state = out_dir / STATE_DIR
    for path in out_dir.iterdir():
        if not path.is_file():
            continue
        if _TMP_RE.search(path.name):
            path.unlink(missing_ok=True)
            continue
        try:
            shard_name = parse_shard_file_name(path.name)[0]
        except ValueError:
            continue
        if shard_name == name and path.name not in keep:
            path.unlink(missing_ok=True)
    if state.is_dir():
        for path in state.iterdir():
            if path.name.removesuffix(".json") not in keep:
                path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------- all shards


def _kill_pool(executor: ProcessPoolExecutor) -> None:
    processes = list(getattr(executor, "_processes", {}).values())
    for p in processes:
        p.kill()
    executor.shutdown(wait=False, cancel_futures=True)
    for p in processes:
        p.join(timeout=5)


def write_shards(
    tasks: list[ShardTask],
    out_dir: Path,
    name: str,
    *,
    processes: int,
    progress: Progress | None = None,
    check_stop: Callable[[], None] | None = None,
) -> list[ShardResult]:
    """Write every task's shard (keeping verified ones) and return results in task order.

    ``processes`` <= 1 writes in this process (tests, tiny datasets); otherwise a spawn-based
    process pool. On any error or stop, the pool is killed and temp files are removed.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, ShardResult] = {}
    for task in tasks:
        kept = verified_shard(task, out_dir)
        if kept is not None:
            results[task.file_name] = kept
    clean_output(out_dir, name, keep=set(results))
    todo = [t for t in tasks if t.file_name not in results]
    total = sum(len(t.items) for t in tasks)
    counts = {t.file_name: len(t.items) for t in tasks if t.file_name in results}

    def reported(file_name: str, done: int) -> None:
        # max: a pool worker's last queued count may arrive after its shard's completion.
        counts[file_name] = max(counts.get(file_name, 0), done)
        if progress is not None:
            progress(sum(counts.values()), total)

    if progress is not None:
        progress(sum(counts.values()), total)
    try:
        if processes <= 1 or len(todo) <= 1:
            for task in todo:
                if check_stop is not None:
                    check_stop()

                def report(file_name: str, done: int) -> None:
                    reported(file_name, done)
                    if check_stop is not None:
                        check_stop()

                results[task.file_name] = write_shard(task, str(out_dir), report)
        else:
            _write_in_pool(todo, out_dir, min(processes, len(todo)), results, reported, check_stop)
    except BaseException:
        for path in out_dir.iterdir():
            if _TMP_RE.search(path.name):
                path.unlink(missing_ok=True)
        raise
    return [results[t.file_name] for t in tasks]


def _write_in_pool(
    todo: list[ShardTask],
    out_dir: Path,
    processes: int,
    results: dict[str, ShardResult],
    reported: Callable[[str, int], None],
    check_stop: Callable[[], None] | None,
) -> None:
    ctx = multiprocessing.get_context("spawn")
    progress_queue = ctx.Queue()
    executor = ProcessPoolExecutor(
        processes, mp_context=ctx, initializer=_init_pool_worker, initargs=(progress_queue,)
    )

    def drain() -> None:
        while True:
            try:
                file_name, done = progress_queue.get_nowait()
            except queue_lib.Empty:
                return
            reported(file_name, done)

    sizes = {t.file_name: len(t.items) for t in todo}
    try:
        pending: set[Future] = {executor.submit(write_shard, t, str(out_dir)) for t in todo}
        while pending:
            finished, pending = wait(pending, timeout=POLL_S, return_when=FIRST_COMPLETED)
            drain()
            for future in finished:
                result = future.result()
                results[result.file_name] = result
                reported(result.file_name, sizes[result.file_name])
            if check_stop is not None:
                check_stop()
    except BaseException:
        _kill_pool(executor)
        if check_stop is not None:
            check_stop()  # a stop request explains the failure better than a broken pool
        raise
    executor.shutdown(wait=True)
    progress_queue.close()


def default_processes(setting: int) -> int:
    """``setting`` processes, or one per CPU core when it is 0."""
    return setting if setting > 0 else (os.cpu_count() or 1)
