"""Write the shards of a dataset: plan, parallel write, verified resume.

Plan. Each split's file list is sorted, then shuffled with ``numpy`` seeded by
``(shuffle_seed, split index)``, and cut into contiguous chunks, one per shard, so every shard
mixes classes and the same input and seed always give the same shards.

Write. Each shard is written by a worker process (:mod:`dataset_service.processes`; no
TensorFlow: records are encoded by :mod:`shard_format.encode`), which reads its images from the
tree (files of a folder, or members of the zip at their offsets: :mod:`dataset_service.tree`),
checks them (:mod:`dataset_service.images`), and writes ``<final>.tmp-<pid>``, fsynced; a sidecar
``.write-state/<final>.json`` records the shard's task key, record count, size and SHA-256;
then the shard is renamed to its final name.
``shard_format.encode.serialize`` is deterministic, so the bytes do not depend on the process
that wrote them.

Resume. Before writing, a shard is kept when its sidecar has the same task key (a hash of the
writer version, the shard's name and every item's path, label, wnid, size and version: mtime
on disk, CRC-32 in a zip) and the file's size and SHA-256 match the sidecar. Every other shard
file, temp file and sidecar of the dataset is deleted and rewritten, so the final name of a shard
always means "complete".
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
from functools import cached_property
from pathlib import Path
from typing import NamedTuple

import numpy as np

from dataset_service.errors import BadImage, ShardCountError
from dataset_service.gcpause import paused_gc
from dataset_service.images import is_clean_rgb_jpeg, to_rgb_jpeg
from dataset_service.processes import worker_context
from dataset_service.tree import Member, TreeRef, read_member
from datavolume.files import atomic_write_json, file_digest, fsync_dir, read_json
from shard_format.encode import frame, serialize
from shard_format.schema import SPLITS, parse_shard_file_name, shard_file_name

#: Bump whenever the bytes written for the same input change.
WRITER_VERSION = 2
STATE_DIR = ".write-state"
REPORT_EVERY = 64
POLL_S = 0.2
PARENT_POLL_S = 1.0
_TMP_RE = re.compile(r"\.tmp-\d+$")

Progress = Callable[[int, int | None], None]


class Item(NamedTuple):
    """One source image and the record it becomes (a tuple: 120,000 of them are built, planned
    and sent to the writer processes)."""

    rel: str  # path once reorganized, under the tree root: the shuffle's sort key
    label: int
    wnid: str
    file_name: str
    size: int
    stamp: int  # mtime_ns on disk, CRC-32 in a zip
    src: str = ""  # where the image is in the source now (rel when empty); names it in messages
    member: Member | None = None  # its zip entry, for a tree read in place

    @property
    def where(self) -> str:
        return self.src or self.rel


_TEXT_FIELDS = ("rel", "wnid", "file_name", "src")
_INT_FIELDS = ("label", "size", "stamp")


def _ints(values: Iterable[int]) -> bytes:
    return np.fromiter(values, dtype="<i8").tobytes()


def _pack(items: tuple[Item, ...]) -> dict:
    """``items`` as a few strings and int64 arrays: pickled in milliseconds (as objects, the
    items of the real train split take seconds to pickle and as long again to unpickle)."""
    columns = dict(zip(Item._fields, zip(*items, strict=True), strict=True)) if items else {}
    packed: dict = {"n": len(items)}
    if not items:
        return packed
    packed.update({f: "\0".join(columns[f]) for f in _TEXT_FIELDS})
    packed.update({f: _ints(columns[f]) for f in _INT_FIELDS})
    if columns["member"][0] is not None:
        members = dict(zip(Member._fields, zip(*columns["member"], strict=True), strict=True))
        packed["member"] = {
            f: "\0".join(v) if f == "name" else _ints(v) for f, v in members.items()
        }
    return packed


def _unpack(packed: dict) -> tuple[Item, ...]:
    n = packed["n"]
    if not n:
        return ()
    text = {f: packed[f].split("\0") for f in _TEXT_FIELDS}
    ints = {f: np.frombuffer(packed[f], dtype="<i8").tolist() for f in _INT_FIELDS}
    if "member" in packed:
        m = packed["member"]
        columns = [
            m[f].split("\0") if f == "name" else np.frombuffer(m[f], dtype="<i8").tolist()
            for f in Member._fields
        ]
        members: Iterable[Member | None] = map(Member._make, zip(*columns, strict=True))
    else:
        members = [None] * n
    fields = [*(text.get(f) or ints[f] for f in Item._fields[:-1]), members]
    return tuple(map(Item._make, zip(*fields, strict=True)))


@dataclass(frozen=True)
class ShardTask:
    split: str
    index: int
    count: int
    file_name: str
    source: TreeRef  # the tree the items' paths are relative to
    label: str  # names the source in messages
    items: tuple[Item, ...]
    skip_bad: bool

    @cached_property
    def packed(self) -> dict:
        """The items as a few strings and arrays (see :func:`_pack`): what is pickled."""
        with paused_gc():
            return _pack(self.items)

    def key(self) -> str:
        """Identity of the shard's content: what a kept shard must have been written from
        (every item's paths, label, wnid, file name, size and version, in order)."""
        packed = self.packed
        h = hashlib.sha256(
            json.dumps([WRITER_VERSION, self.file_name, self.skip_bad, packed["n"]]).encode()
        )
        if packed["n"]:
            for name in _TEXT_FIELDS:
                h.update(packed[name].encode() + b"\1")
            for name in _INT_FIELDS:
                h.update(packed[name])
        return h.hexdigest()

    def __getstate__(self) -> dict:
        state = {k: v for k, v in self.__dict__.items() if k not in ("items", "packed")}
        state["packed"] = self.packed
        return state

    def __setstate__(self, state: dict) -> None:
        with paused_gc():
            for k, v in state.items():
                object.__setattr__(self, k, v)
            object.__setattr__(self, "items", _unpack(state["packed"]))


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
    source: TreeRef,
    label: str,
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
            source=source,
            label=label,
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


class _Reader:
    """Reads items' bytes from a tree: files under a folder, or members of an open zip."""

    def __init__(self, source: TreeRef, label: str) -> None:
        self._source, self._label = source, label
        self._fd = os.open(source.path, os.O_RDONLY) if source.kind == "zip" else None

    def read(self, item: Item) -> bytes:
        if self._fd is not None:
            assert item.member is not None
            return read_member(self._fd, item.member, self._label)
        try:
            return (Path(self._source.path) / item.where).read_bytes()
        except OSError as exc:
            raise BadImage(item.where, f"cannot read image: {exc.strerror or exc}") from None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)


def write_shard(
    task: ShardTask, out_dir: str, report: Callable[[str, int], None] | None = None
) -> ShardResult:
    """Write one shard atomically and record its sidecar; returns what was written.

    ``report(file_name, items_done)`` is called every few records (in a pool worker, the
    progress queue is used instead). Raises :class:`BadImage` unless ``task.skip_bad``, and
    :class:`~dataset_service.errors.SourceError` for a corrupt zip entry.
    """
    if report is None and _progress_queue is not None:
        q = _progress_queue

        def report(file_name: str, done: int) -> None:
            q.put((file_name, done))

    out = Path(out_dir)
    final = out / task.file_name
    tmp = out / f"{task.file_name}.tmp-{os.getpid()}"
    reader = _Reader(task.source, task.label)
    re_encoded: list[str] = []
    skipped: list[str] = []
    framed: list[bytes] = []  # a shard is a few MiB: written (and hashed) in one go
    try:
        with paused_gc():  # no cycles among the records: nothing to collect
            for i, item in enumerate(task.items, start=1):
                data = reader.read(item)
                if not is_clean_rgb_jpeg(data):  # the rare image that is not: the full judgement
                    try:
                        image = to_rgb_jpeg(data, item.where)
                    except BadImage as exc:
                        if not task.skip_bad:
                            raise
                        skipped.append(f"{item.where}: {exc.reason}")
                        continue
                    if image.re_encoded:
                        re_encoded.append(item.where)
                    data = image.data
                framed.append(frame(serialize(data, item.label, item.wnid, item.file_name)))
                if report is not None and i % REPORT_EVERY == 0:
                    report(task.file_name, i)
        num_records = len(framed)
        content = b"".join(framed)
        del framed
        with open(tmp, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        result = ShardResult(
            split=task.split,
            index=task.index,
            file_name=task.file_name,
            num_records=num_records,
            num_bytes=len(content),
            sha256=hashlib.sha256(content).hexdigest(),
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
    finally:
        reader.close()
    if report is not None:
        report(task.file_name, len(task.items))
    return result


# ---------------------------------------------------------------------------- resume


def verified_shard(task: ShardTask, out_dir: Path) -> ShardResult | None:
    """The recorded result of a complete shard written from the same task, or None."""
    final = Path(out_dir) / task.file_name
    raw = read_json(sidecar_path(out_dir, task.file_name), tolerate_corrupt=True)
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


class WriterPool:
    """Writer processes, started as soon as the pool is made, so that their start-up
    overlaps whatever the caller does before writing; ``with`` kills them on any error.

    ``processes`` <= 1 makes no processes: shards are then written in the calling process.
    """

    def __init__(self, processes: int) -> None:
        self.processes = processes
        self.executor: ProcessPoolExecutor | None = None
        if processes <= 1:
            return
        ctx = worker_context()
        self.queue = ctx.Queue()
        self.executor = ProcessPoolExecutor(
            processes, mp_context=ctx, initializer=_init_pool_worker, initargs=(self.queue,)
        )
        for _ in range(processes):
            self.executor.submit(os.getpid)  # start every process now

    def kill(self) -> None:
        if self.executor is None:
            return
        processes = list(getattr(self.executor, "_processes", {}).values())
        for p in processes:
            p.kill()
        self.executor.shutdown(wait=False, cancel_futures=True)
        for p in processes:
            p.join(timeout=5)
        self.executor = None

    def __enter__(self) -> WriterPool:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if self.executor is None:
            return
        if exc_type is not None:
            self.kill()
            return
        self.executor.shutdown(wait=True)
        self.queue.close()


def write_shards(
    tasks: list[ShardTask],
    out_dir: Path,
    name: str,
    *,
    processes: int = 1,
    pool: WriterPool | None = None,
    progress: Progress | None = None,
    check_stop: Callable[[], None] | None = None,
    meanwhile: Callable[[], None] | None = None,
) -> list[ShardResult]:
    """Write every task's shard (keeping verified ones) and return results in task order.

    In ``pool`` (or in a pool of ``processes`` made for the call); with no pool processes, or
    a single shard to write, in this process (tests, tiny datasets). On any error or stop, the
    pool is killed and temp files are removed. ``meanwhile()`` runs once in this process, while
    the pool writes (after the shards, without one).
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
        if pool is None and processes > 1 and len(todo) > 1:
            with WriterPool(min(processes, len(todo))) as own:
                _write_in_pool(todo, out_dir, own, results, reported, check_stop, meanwhile)
        elif pool is not None and pool.executor is not None and len(todo) > 1:
            _write_in_pool(todo, out_dir, pool, results, reported, check_stop, meanwhile)
        else:
            for task in todo:
                if check_stop is not None:
                    check_stop()

                def report(file_name: str, done: int) -> None:
                    reported(file_name, done)
                    if check_stop is not None:
                        check_stop()

                results[task.file_name] = write_shard(task, str(out_dir), report)
            if meanwhile is not None:
                meanwhile()
    except BaseException:
        for path in out_dir.iterdir():
            if _TMP_RE.search(path.name):
                path.unlink(missing_ok=True)
        raise
    return [results[t.file_name] for t in tasks]


def _write_in_pool(
    todo: list[ShardTask],
    out_dir: Path,
    pool: WriterPool,
    results: dict[str, ShardResult],
    reported: Callable[[str, int], None],
    check_stop: Callable[[], None] | None,
    meanwhile: Callable[[], None] | None = None,
) -> None:
    executor, progress_queue = pool.executor, pool.queue
    assert executor is not None

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
        if meanwhile is not None:
            meanwhile()
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
        pool.kill()
        if check_stop is not None:
            check_stop()  # a stop request explains the failure better than a broken pool
        raise


def default_processes(setting: int) -> int:
    """``setting`` processes, or one per CPU core when it is 0."""
    return setting if setting > 0 else (os.cpu_count() or 1)
