"""Shared helpers of the benchmarks: repeats and statistics, measured child processes (time and
peak memory), a description of the machine, markdown tables, and rewriting BENCHMARKS.md.

Every measured job runs in a fresh child process (:func:`run_child`), so its peak memory is its
own and nothing it imported or cached survives into the next run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import itertools
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

from datavolume.files import atomic_write_text

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
DEFAULT_WORK_DIR = Path(os.environ.get("BENCH_WORK_DIR", "/tmp/bench-work"))
SAMPLE_INTERVAL_S = 0.02
CHILDREN_EVERY = 10  # samples between two listings of the process tree

# --------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class Stats:
    """Min, median and max of repeated measurements."""

    values: tuple[float, ...]

    @classmethod
    def of(cls, values: Iterable[float]) -> Stats:
        values = tuple(float(v) for v in values)
        if not values:
            raise ValueError("no values")
        return cls(values)

    @property
    def min(self) -> float:
        return min(self.values)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def max(self) -> float:
        return max(self.values)

    def fmt(self, spec: str = ",.0f", scale: float = 1.0) -> str:
        """``median (min..max)``, or just the value when there is one."""
        med, lo, hi = (format(v * scale, spec) for v in (self.median, self.min, self.max))
        return med if len(self.values) == 1 else f"{med} ({lo}..{hi})"


STATS_NOTE = "cells: median (min..max) over the repeats"


def repeat(fn: Callable[[], Any], n: int) -> list[Any]:
    """Call ``fn`` ``n`` times; returns the results in order."""
    if n < 1:
        raise ValueError(f"repeats must be >= 1, got {n}")
    return [fn() for _ in range(n)]


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(seconds, result) of one call, on the monotonic performance clock."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def ratio(a: float, b: float) -> str:
    """``a / b`` as ``"3.2x"`` (``"-"`` when undefined)."""
    if not b or a != a or b != b:
        return "-"
    return f"{a / b:.2f}x"


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) with linear interpolation (numpy's default)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


# --------------------------------------------------------------------------- child processes


@dataclass
class ChildRun:
    """What a measured child process returned and used."""

    result: Any
    wall_s: float  # from start to exit of the child, imports included
    peak_tree_rss: int  # largest sampled sum of RSS over the child and its descendants
    peak_proc_rss: int  # kernel's peak RSS of the largest single process (wait4 ru_maxrss)
    log_path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class ChildFailed(RuntimeError):
    pass


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    env.setdefault("KERAS_BACKEND", "tensorflow")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


def _rss_sum(procs: list[psutil.Process]) -> int:
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def _tree(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return [proc]


def run_child(
    target: str,
    kwargs: dict[str, Any] | None = None,
    *,
    log_path: Path | None = None,
    timeout_s: float = 3600.0,
    env: dict[str, str] | None = None,
) -> ChildRun:
    """Run ``module:function(**kwargs)`` in a fresh Python process and measure it.

    The function's return value must be JSON-serializable. Its peak memory is sampled every
    20 ms as the sum of RSS over the process tree (the job's worker processes included) and
    read from the kernel (``wait4``) as the peak RSS of the largest single process.
    """
    with tempfile.TemporaryDirectory(prefix="bench-child-") as tmp:
        args_path = Path(tmp) / "args.json"
        result_path = Path(tmp) / "result.json"
        args_path.write_text(json.dumps(kwargs or {}))
        cmd = [sys.executable, "-m", "bench._child", target, str(args_path), str(result_path)]
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            log = open(log_path, "ab")  # noqa: SIM115 - closed below
            log.write(f"\n=== {time.strftime('%H:%M:%S')} {target} {kwargs}\n".encode())
            log.flush()
        else:
            log = open(os.devnull, "wb")  # noqa: SIM115
        try:
            start = time.perf_counter()
            popen = subprocess.Popen(
                cmd, cwd=ROOT, env=child_env(env), stdout=log, stderr=subprocess.STDOUT
            )
            proc = psutil.Process(popen.pid)
            peak = [0]
            done = threading.Event()

            def sample() -> None:
                # Listing the children scans all of /proc: done every 10th sample only, so
                # the sampler costs the measured job (sharing its cores) little.
                procs: list[psutil.Process] = []
                for i in itertools.count():
                    if done.is_set():
                        return
                    if i % CHILDREN_EVERY == 0:
                        procs = _tree(proc)
                    peak[0] = max(peak[0], _rss_sum(procs))
                    done.wait(SAMPLE_INTERVAL_S)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            deadline = start + timeout_s
            status = rusage = None
            while True:
                pid, status, rusage = os.wait4(popen.pid, os.WNOHANG)
                if pid:
                    break
                if time.perf_counter() > deadline:
                    try:
                        victims = [*proc.children(recursive=True), proc]
                    except psutil.Error:
                        victims = [proc]
                    for p in victims:
                        with contextlib.suppress(psutil.Error):
                            p.kill()
                    _, status, rusage = os.wait4(popen.pid, 0)
                    done.set()
                    raise ChildFailed(f"{target} ran past {timeout_s:.0f} s; log: {log_path}")
                time.sleep(0.05)
            wall = time.perf_counter() - start
            done.set()
            sampler.join()
            popen.returncode = os.waitstatus_to_exitcode(status)
        finally:
            log.close()
        if popen.returncode != 0:
            raise ChildFailed(f"{target} exited with {popen.returncode}; log: {log_path}")
        result = json.loads(result_path.read_text())
    return ChildRun(
        result=result,
        wall_s=wall,
        peak_tree_rss=peak[0],
        peak_proc_rss=rusage.ru_maxrss * 1024,  # KiB on Linux
        log_path=log_path,
    )


# --------------------------------------------------------------------------- the machine


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(*dists: str) -> str:
    for dist in dists:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return "?"


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def machine() -> dict[str, str]:
    """What the numbers were measured on (read without importing TensorFlow)."""
    return {
        "cpu": re.sub(r"\s+", " ", _cpu_model()),
        "cores": str(usable_cores()),
        "ram_gib": f"{psutil.virtual_memory().total / 2**30:.0f}",
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "tensorflow": _version("tensorflow", "tensorflow-cpu"),
        "keras": _version("keras"),
    }


def machine_line(m: dict[str, str] | None = None) -> str:
    m = m or machine()
    return (
        f"{m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, {m['os']}; "
        f"Python {m['python']}, TensorFlow {m['tensorflow']}, Keras {m['keras']}"
    )


def command_line(module: str, argv: Sequence[str] | None = None) -> str:
    argv = sys.argv[1:] if argv is None else list(argv)
    return shlex.join(["python", "-m", module, *argv])


@dataclass(frozen=True)
class RunInfo:
    """The facts every table's header line states."""

    command: str
    repeats: int
    machine: str
    date: str

    @classmethod
    def now(cls, command: str, repeats: int) -> RunInfo:
        date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        return cls(command=command, repeats=repeats, machine=machine_line(), date=date)

    def header(self, note: str = "", cells: str = STATS_NOTE) -> str:
        line = (
            f"_Machine: {self.machine} · command: `{self.command}` · date: {self.date} · "
            f"repeats: {self.repeats}; {cells}_"
        )
        return f"{line}\n_{note}_" if note else line


# --------------------------------------------------------------------------- markdown


def md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], align: str = "") -> str:
    """A GitHub markdown table; ``align`` has one letter (l/r/c) per column, default l then r."""
    headers = [str(h) for h in headers]
    align = align or "l" + "r" * (len(headers) - 1)
    marks = {"l": "---", "r": "---:", "c": ":---:"}
    lines = [
        "| " + " | ".join(headers) + " |",
        "| " + " | ".join(marks[a] for a in align) + " |",
    ]
    for row in rows:
        cells = [str(c).replace("|", "\\|") for c in row]
        if len(cells) != len(headers):
            raise ValueError(f"row has {len(cells)} cells, expected {len(headers)}: {row!r}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"


def replace_section(path: Path, name: str, body: str) -> None:
    """Replace what lies between ``<!-- bench:NAME:start -->`` and ``<!-- bench:NAME:end -->``.

    Raises ValueError if the markers are missing or out of order (nothing is written then).
    The file is rewritten atomically.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    start, end = _markers(name)
    i, j = text.find(start), text.find(end)
    if i < 0 or j < 0 or j < i or text.count(start) != 1 or text.count(end) != 1:
        raise ValueError(f"{path} lacks one pair of markers {start} ... {end}")
    new = text[: i + len(start)] + "\n" + body.strip("\n") + "\n" + text[j:]
    atomic_write_text(path, new)


def section_names(path: Path) -> list[str]:
    return re.findall(r"<!-- bench:([\w-]+):start -->", Path(path).read_text(encoding="utf-8"))


def run_standalone(module, argv: Sequence[str] | None = None) -> int:
    """``main`` of a benchmark that needs no prepared data (``NEEDS_DATA = False``): its own
    options, ``module.run``, then its section of ``--output``, also printed."""
    p = common_parser(module.__doc__)
    module.add_arguments(p)
    args = p.parse_args(argv)
    name = module.__spec__.name if module.__spec__ else module.__name__  # not "__main__"
    info = RunInfo.now(command_line(name, argv), args.repeats)
    body = module.run(None, args, info)
    replace_section(args.output, module.SECTION, body)
    print(body)
    return 0


def common_parser(description: str | None) -> argparse.ArgumentParser:
    """The options every benchmark script takes."""
    p = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="fraction of every split of the full dataset (default: 1.0 = 100k/10k/10k)",
    )
    p.add_argument("--repeats", type=int, default=3, help="runs per measurement (default: 3)")
    p.add_argument(
        "--work-dir",
        type=Path,
        default=DEFAULT_WORK_DIR,
        help=f"generated data, reused across runs (default: {DEFAULT_WORK_DIR})",
    )
    p.add_argument(
        "--output",
        type=Path,
        default=BENCHMARKS_MD,
        help="markdown file whose sections are rewritten (default: BENCHMARKS.md)",
    )
    return p


# --------------------------------------------------------------------------- formatting


def mib(n: float) -> float:
    return n / 2**20


def fmt_int(n: float) -> str:
    return f"{n:,.0f}"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
