"""The container test needs a Docker engine. Without one it is skipped with that reason, unless
``CONTAINER_TEST=require`` (CI sets it), which turns the missing engine into a failure."""

from __future__ import annotations

import os
import uuid

import pytest

from tests.compose.stack import Stack, engine_answers


@pytest.fixture(scope="session")
def stack():
    if not engine_answers():
        message = "no Docker engine answers here: the container test did not run"
        if os.environ.get("CONTAINER_TEST") == "require":
            pytest.fail(message)
        pytest.skip(message)
    stack = Stack(project=f"tin-test-{uuid.uuid4().hex[:8]}")
    try:
        stack.timed("build_s", "build", timeout=3600)
        stack.up()
        yield stack
    except BaseException:
        print(stack.logs())
        raise
    finally:
        print(f"container test timings: {stack.timings}")
        stack.compose("down", "--volumes", "--remove-orphans", "--timeout", "30", check=False)
