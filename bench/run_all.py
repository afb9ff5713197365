"""Run the benchmarks and rewrite their sections of BENCHMARKS.md: the one command.

    python -m bench.run_all [--scale 1.0] [--repeats 3]
        [--only sharding,input,train,api,recipe-step,recipes,predict,sweeps]

Generates the synthetic Tiny ImageNet once into the work dir (reused while the spec is the
same; only when a selected benchmark reads it), packs it, prepares it once with the project's
pipeline, then runs each selected benchmark and rewrites its section of ``--output`` as soon as
it is done (so the sections of an interrupted run that completed are kept). ``--scale`` below 1
is for trying the scripts: the tables then say so in their command and data lines.
"""

from __future__ import annotations

import argparse
import sys
import time

from bench import (
    api_load,
    input_pipeline,
    predict,
    recipe_step,
    recipes,
    sharding,
    sweeps,
    train_step,
)
from bench.common import RunInfo, command_line, common_parser, log, replace_section, section_names
from bench.data import ensure_prepared, ensure_source, spec_for_scale

BENCHES = {
    "sharding": sharding,
    "input": input_pipeline,
    "train": train_step,
    "api": api_load,
    "recipe-step": recipe_step,
    "recipes": recipes,
    "predict": predict,
    "sweeps": sweeps,
}


def parse_only(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in BENCHES]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"--only takes names from {','.join(BENCHES)}, got {text!r}"
        )
    return tuple(n for n in BENCHES if n in names)  # always in the file's order


def build_parser() -> argparse.ArgumentParser:
    p = common_parser(__doc__)
    p.add_argument(
        "--only",
        type=parse_only,
        default=tuple(BENCHES),
        help=f"comma-separated subset of {','.join(BENCHES)} (default: all)",
    )
    for module in BENCHES.values():
        module.add_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.repeats < 1:
        raise SystemExit("--repeats must be >= 1")
    present = set(section_names(args.output))
    missing = [BENCHES[n].SECTION for n in args.only if BENCHES[n].SECTION not in present]
    if missing:
        raise SystemExit(f"{args.output} has no markers for section(s) {', '.join(missing)}")

    started = time.monotonic()
    data = None
    if any(getattr(BENCHES[n], "NEEDS_DATA", True) for n in args.only):
        data = ensure_prepared(ensure_source(args.work_dir, spec_for_scale(args.scale)))
    info = RunInfo.now(command_line("bench.run_all", argv), args.repeats)
    for name in args.only:
        module = BENCHES[name]
        t0 = time.monotonic()
        log(f"== {name}")
        body = module.run(data, args, info)
        replace_section(args.output, module.SECTION, body)
        log(f"== {name}: done in {time.monotonic() - t0:.0f} s; wrote its section of {args.output}")
    log(f"all done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
