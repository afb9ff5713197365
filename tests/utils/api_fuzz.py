"""A short, deterministic schemathesis run (valid and invalid data) of a service's OpenAPI spec
against the service running as its own uvicorn process (with a token), and what that process
loaded meanwhile."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from scripts.run_local import Service, compose_config, start_service, stop_service

TOKEN = "fuzz-token"
#: Examples per operation: enough to reach every field's edge values, short enough for CI.
MAX_EXAMPLES = 30
#: The checks that apply to these APIs, on valid and invalid data alike. Left out:
#: ``positive_data_acceptance`` (a schema-valid run naming no prepared dataset is rightly a
#: 422), ``negative_data_rejection`` (unknown query parameters are ignored by design, and the
#: token this run adds to every call makes some "invalid" calls valid) and the stateful ones.
CHECK_NAMES = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "ignored_auth",
)
#: The API process must stay small: the trainer's keeps Keras, TensorFlow and JAX out of it.
MAX_API_RSS_BYTES = 300 * 1024**2
_HEAVY = re.compile(r"tensorflow|jaxlib|xla_extension|libtpu", re.IGNORECASE)

FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@contextmanager
def running(name: str, data_root: Path) -> Iterator[Service]:
    service = start_service(name, compose_config(), data_root, TOKEN)
    try:
        yield service
    finally:
        stop_service(service)


def peak_rss_bytes(pid: int) -> int:
    """The process's peak resident set (the kernel's VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmHWM for pid {pid}")


def heavy_libraries(pid: int) -> set[str]:
    """Shared objects of TensorFlow, JAX or XLA mapped into the process."""
    maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
    return {line.split()[-1] for line in maps if _HEAVY.search(line.split()[-1])}


def checks() -> list:
    """The schemathesis check functions named in :data:`CHECK_NAMES`."""
    import schemathesis.checks as available

    return [getattr(available, name) for name in CHECK_NAMES]


def fuzz(service: Service) -> dict[str, int]:
    """Run every operation of the service's spec through the checks (a failing check raises);
    returns how many cases each operation got."""
    import schemathesis
    from schemathesis import GenerationMode

    schema = schemathesis.openapi.from_url(f"{service.url}/openapi.json")
    selected = checks()
    cases: dict[str, int] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        cases[operation.label] = 0
        # Valid data, then data that breaks the schema (which must get a 4xx).
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @FUZZ_SETTINGS
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case) -> None:
                cases[case.operation.label] += 1
                case.call_and_validate(headers=service.headers, checks=selected)

            try:
                run()
            except Unsatisfiable:
                if mode is GenerationMode.POSITIVE:
                    raise
                # An operation without parameters or body has no invalid input to make.
    return cases
