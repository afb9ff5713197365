"""A command's JSON answer is read from its last line of output; a command that runs too long or
ends without one fails with a reason a person can read."""

from __future__ import annotations

import os
import sys

import pytest

from trainer_service.inference.process import ProcessFailed, run_json_process

ENV = dict(os.environ)


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_the_last_line_is_the_answer():
    out = run_json_process(python('print("noise"); print(\'{"a": 1}\')'), ENV, 30, "the job")
    assert out == {"a": 1}


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("import sys; sys.exit('disk on fire')", "the job failed (exit 1): disk on fire"),
        ("print('[1, 2]')", "the job failed (exit 0): no output"),
        ("import time; time.sleep(30)", "the job ran longer than 0.5 s"),
    ],
    ids=["crash", "not-an-object", "timeout"],
)
def test_a_process_without_its_answer_fails_with_a_reason(code, reason):
    with pytest.raises(ProcessFailed) as failed:
        run_json_process(python(code), ENV, 0.5 if "sleep" in code else 30, "the job")
    assert str(failed.value) == reason
