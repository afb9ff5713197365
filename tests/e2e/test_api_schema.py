"""Each service's spec says what the service does: a schemathesis run against the real process
(fixed seed, bounded examples, valid and invalid data), then what that process grew to."""

from __future__ import annotations

import pytest

from tests.utils.api_fuzz import MAX_API_RSS_BYTES, fuzz, heavy_libraries, peak_rss_bytes, running

#: The operation that must be among those fuzzed: the one that starts a job.
STARTS = {"dataset": "POST /v1/jobs", "trainer": "POST /v1/runs"}


@pytest.fixture(scope="module", params=sorted(STARTS))
def service(request, tmp_path_factory):
    with running(request.param, tmp_path_factory.mktemp(f"fuzz-{request.param}")) as live:
        yield live


def test_every_answer_matches_the_spec_and_the_api_process_stays_small(service):
    cases = fuzz(service)
    assert STARTS[service.name] in cases and min(cases.values()) >= 1, cases
    assert sum(cases.values()) >= 10 * len(cases)  # not a run that tried nothing
    # The API process never loads TensorFlow, JAX or XLA, and stays small.
    assert heavy_libraries(service.process.pid) == set()
    assert peak_rss_bytes(service.process.pid) < MAX_API_RSS_BYTES
