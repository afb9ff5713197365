"""API-under-load benchmark: status-poll latency of the dataset service with concurrent pollers.

    python -m bench.api_load [--scale 1.0] [--repeats 3] [--duration 30] [--pollers 50]

Per repeat: the dataset service is started as a real uvicorn process on loopback, with a fresh
data root, the way ``scripts/run_local.py`` starts it (``compose_config`` + ``start_service``:
the container's environment from docker-compose.yml). A prepare job is posted (the benchmark's
zip as its source), and once it runs, ``--pollers`` concurrent pollers (``httpx.AsyncClient``
tasks in a separate process, one keep-alive connection each) GET the job's status URL for
``--duration`` seconds or until the job finishes, whichever is first: **busy**. Then the same
pollers poll the finished job for ``--duration`` seconds: **idle**. Each poller waits the poll
interval between an answer and its next request; one load per value of ``--poll-intervals``
(default ``1,0``: realistic pollers once a second, and back to back, which measures the
throughput the service sustains). Every request has a 5 s timeout; an error is a timeout, a
connection error or any status but 200.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import sys
import time
from pathlib import Path

from bench.common import (
    ROOT,
    RunInfo,
    Stats,
    log,
    md_table,
    percentile,
    ratio,
    run_child,
    usable_cores,
)
from bench.data import WorkData, describe, run_script, scratch_root

SECTION = "api"
TERMINAL = {"succeeded", "failed", "cancelled", "interrupted"}
TARGET_P99_MS = 20.0
REQUEST_TIMEOUT_S = 5.0
BUSY, IDLE = "busy", "idle"


# --------------------------------------------------------------------------- the load (child)


async def poll_load(
    url: str,
    *,
    pollers: int,
    duration_s: float,
    interval_s: float = 0.0,
    stop_when_terminal: bool = False,
    timeout_s: float = REQUEST_TIMEOUT_S,
) -> dict:
    """``pollers`` tasks GET ``url`` until ``duration_s`` has passed (or the job is terminal).

    Bounded: a fixed number of tasks, one request in flight per task, a per-request timeout and
    an overall deadline. Returns the latencies (seconds) of the 200 answers and the errors.
    """
    import httpx

    if not url.startswith(("http://127.0.0.1:", "http://localhost:")):
        raise ValueError(f"loopback URLs only, got {url!r}")
    latencies: list[float] = []
    errors: dict[str, int] = {}
    stop = asyncio.Event()
    first_terminal: list[float] = []

    async def poller(client, offset: float, deadline: float) -> None:
        await asyncio.sleep(offset)  # paced pollers start spread over one interval
        while not stop.is_set() and time.perf_counter() < deadline:
            t0 = time.perf_counter()
            try:
                response = await client.get(url)
            except httpx.HTTPError as exc:
                key = type(exc).__name__
                errors[key] = errors.get(key, 0) + 1
            else:
                if response.status_code == 200:
                    latencies.append(time.perf_counter() - t0)
                    if stop_when_terminal and response.json().get("state") in TERMINAL:
                        if not first_terminal:
                            first_terminal.append(time.perf_counter())
                        stop.set()
                else:
                    key = f"HTTP {response.status_code}"
                    errors[key] = errors.get(key, 0) + 1
            if interval_s > 0:
                await asyncio.sleep(interval_s)

    async def warm(client) -> None:
        with contextlib.suppress(httpx.HTTPError):
            await client.get(url)

    # One client (one keep-alive connection) per poller: a shared 50-connection pool made the
    # client, not the service, the bottleneck in trials on 2 cores. The clients are created and
    # connected (one untimed request each) before the clock starts.
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(limits=httpx.Limits(max_connections=1), timeout=timeout_s)
            )
            for _ in range(pollers)
        ]
        await asyncio.gather(*(warm(c) for c in clients))
        rng = random.Random(0)
        start = time.perf_counter()
        deadline = start + duration_s
        tasks = [
            asyncio.create_task(poller(c, rng.uniform(0, interval_s), deadline)) for c in clients
        ]
        try:
            await asyncio.wait_for(asyncio.gather(*tasks), duration_s + timeout_s + 10)
        finally:
            for t in tasks:
                t.cancel()
    end = first_terminal[0] if first_terminal else min(time.perf_counter(), deadline)
    return {
        "latencies": latencies,
        "errors": errors,
        "window_s": end - start,
        "job_finished_early": bool(first_terminal),
    }


def child_poll(
    url: str, pollers: int, duration_s: float, interval_s: float, stop_when_terminal: bool
) -> dict:
    r = asyncio.run(
        poll_load(
            url,
            pollers=pollers,
            duration_s=duration_s,
            interval_s=interval_s,
            stop_when_terminal=stop_when_terminal,
        )
    )
    lat = r.pop("latencies")
    r.update(
        requests=len(lat) + sum(r["errors"].values()),
        ok=len(lat),
        p50_ms=percentile(lat, 50) * 1000,
        p99_ms=percentile(lat, 99) * 1000,
        max_ms=max(lat, default=float("nan")) * 1000,
    )
    return r


# --------------------------------------------------------------------------- the service


def _run_local():
    """``scripts/run_local.py`` as a module (it is a script, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("run_local", ROOT / "scripts" / "run_local.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("run_local", module)
    spec.loader.exec_module(module)
    return module


def _wait_state(client, location: str, states: set[str], timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        job = client.get(location).raise_for_status().json()
        if job["state"] in states or job["state"] in TERMINAL:
            return job
        if time.monotonic() > deadline:
            raise TimeoutError(f"job still {job['state']} after {timeout_s:.0f} s")
        time.sleep(0.1)


def one_repeat(
    data: WorkData, rl, compose: dict, *, pollers: int, duration_s: float, interval_s: float
) -> dict:
    root = scratch_root(data, "api")
    os.link(data.zip_path, root / "source.zip")
    service = rl.start_service("dataset", compose, root, log_dir=data.logs_dir)
    out: dict = {}
    try:
        with service.client() as client:
            response = client.post(
                "/v1/jobs",
                json={"name": "bench", "source": {"kind": "zip", "path": "source.zip"}},
            )
            response.raise_for_status()
            location = response.headers["Location"]
            job = _wait_state(client, location, {"running"}, 120)
            url = f"{service.url}{location}"
            for phase, stop in ((BUSY, True), (IDLE, False)):
                if phase == IDLE:
                    job = _wait_state(client, location, TERMINAL, 3600)
                    if job["state"] != "succeeded":
                        raise RuntimeError(f"prepare job {job['state']}: {job.get('error')}")
                log(f"  {phase}: {pollers} pollers on {location} for up to {duration_s:.0f} s")
                run = run_child(
                    "bench.api_load:child_poll",
                    {
                        "url": url,
                        "pollers": pollers,
                        "duration_s": duration_s,
                        "interval_s": interval_s,
                        "stop_when_terminal": stop,
                    },
                    log_path=data.logs_dir / "api_load.log",
                    timeout_s=duration_s + 120,
                )
                r = run.result
                out[phase] = r
                log(
                    f"    {r['requests']} requests in {r['window_s']:.1f} s, "
                    f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, "
                    f"errors {sum(r['errors'].values())}"
                )
    finally:
        rl.stop_service(service)
        shutil.rmtree(root, ignore_errors=True)
    return out


def measure(
    data: WorkData,
    *,
    repeats: int,
    pollers: int,
    duration_s: float,
    intervals: tuple[float, ...],
) -> dict[float, list[dict]]:
    """Per poll interval, one result per repeat (each with a fresh service, data root and job)."""
    # compose_config runs docker-compose (a wheel in the venv): find it without an activated venv
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = os.pathsep.join([bin_dir, os.environ.get("PATH", "")])
    rl = _run_local()
    compose = rl.compose_config()
    results: dict[float, list[dict]] = {i: [] for i in intervals}
    for r in range(repeats):
        for interval in intervals:
            log(f"api load repeat {r + 1}/{repeats}, poll interval {interval:g} s")
            results[interval].append(
                one_repeat(
                    data, rl, compose, pollers=pollers, duration_s=duration_s, interval_s=interval
                )
            )
    return results


def _pace(interval: float) -> str:
    if interval <= 0:
        return "back to back"
    return f"every {interval:g} s"


def render(
    data: WorkData, results: dict[float, list[dict]], info: RunInfo, args: argparse.Namespace
) -> str:
    out = [
        info.header(
            f"{args.pollers} pollers, each an `httpx.AsyncClient` task with its own keep-alive "
            f"connection, all in one client process; a poller waits the poll interval between "
            f"an answer and its next request (back to back: no wait; paced pollers start at "
            f"random offsets); window {args.duration:g} s, or until the job finished; the "
            f"dataset service as one uvicorn process on loopback; the job prepares the "
            f"{describe(data.spec)} from its zip. Client, service and job share the "
            f"{usable_cores()} CPU cores."
        ),
        "",
    ]
    rows = []
    notes = []
    kinds: dict[str, int] = {}
    for interval, runs in results.items():
        for phase, what in ((BUSY, "prepare job running"), (IDLE, "idle (job finished)")):
            rs = [r[phase] for r in runs]
            p99 = Stats.of(r["p99_ms"] for r in rs)
            for r in rs:
                for k, v in r["errors"].items():
                    kinds[k] = kinds.get(k, 0) + v
            rows.append(
                [
                    _pace(interval),
                    what,
                    Stats.of(r["window_s"] for r in rs).fmt(".1f"),
                    Stats.of(r["requests"] / r["window_s"] for r in rs).fmt(",.0f"),
                    Stats.of(r["p50_ms"] for r in rs).fmt(".1f"),
                    p99.fmt(".1f"),
                    Stats.of(r["max_ms"] for r in rs).fmt(".0f"),
                    sum(sum(r["errors"].values()) for r in rs),
                    "yes" if p99.max < TARGET_P99_MS else "**no**",
                ]
            )
        busy = Stats.of(r[BUSY]["p99_ms"] for r in runs).median
        idle = Stats.of(r[IDLE]["p99_ms"] for r in runs).median
        early = sum(r[BUSY]["job_finished_early"] for r in runs)
        note = f"polling {_pace(interval)}: busy / idle p99 **{ratio(busy, idle)}**"
        if early:
            note += f" (the job ended before the window in {early} of {len(runs)} repeats)"
        notes.append(note)
    out.append(
        md_table(
            [
                "pollers poll",
                "condition",
                "window s",
                "requests/s",
                "p50 ms",
                "p99 ms",
                "max ms",
                "errors (all repeats)",
                f"p99 < {TARGET_P99_MS:g} ms",
            ],
            rows,
        )
    )
    errors = ", ".join(f"{k}: {v}" for k, v in sorted(kinds.items())) or "none"
    out.append(
        f"\nRatios (medians): {'; '.join(notes)}. Errors by kind: {errors}. Latency is measured "
        "in the client, from sending the request to reading the whole answer; with pollers "
        "back to back it is mostly queueing (Little's law: p50 ≈ pollers / throughput), so that "
        "row measures the throughput the service sustains, the paced rows its latency."
    )
    return "\n".join(out)


def parse_intervals(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"intervals must be numbers, got {text!r}") from None
    if not values or any(v < 0 or v > 60 for v in values):
        raise argparse.ArgumentTypeError(f"intervals must be in [0, 60] seconds, got {text!r}")
    return values


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("API load")
    g.add_argument("--pollers", type=int, default=50, help="concurrent pollers (default: 50)")
    g.add_argument("--duration", type=float, default=30.0, help="seconds per window (default: 30)")
    g.add_argument(
        "--poll-intervals",
        type=parse_intervals,
        default=(1.0, 0.0),
        help="seconds a poller waits between polls, one load per value; 0: back to back "
        "(default: 1,0)",
    )


def run(data: WorkData, args: argparse.Namespace, info: RunInfo) -> str:
    if not 1 <= args.pollers <= 500:
        raise SystemExit("--pollers must be in 1..500")
    if not 0 < args.duration <= 600:
        raise SystemExit("--duration must be in (0, 600] seconds")
    results = measure(
        data,
        repeats=args.repeats,
        pollers=args.pollers,
        duration_s=args.duration,
        intervals=args.poll_intervals,
    )
    return render(data, results, info, args)


def main(argv: list[str] | None = None) -> int:
    return run_script("bench.api_load", __doc__, add_arguments, run, SECTION, argv)


if __name__ == "__main__":
    sys.exit(main())
