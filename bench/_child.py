"""Entry point of a measured child process: ``python -m bench._child MODULE:FUNC ARGS RESULT``.

Calls ``FUNC(**json.load(ARGS))`` and writes its JSON-serializable return value to RESULT.
Used by :func:`bench.common.run_child`; not meant to be run by hand.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

from datavolume.files import atomic_write_json


def main(argv: list[str]) -> int:
    target, args_path, result_path = argv
    module_name, _, func_name = target.partition(":")
    func = getattr(importlib.import_module(module_name), func_name)
    kwargs = json.loads(Path(args_path).read_text())
    result = func(**kwargs)
    atomic_write_json(Path(result_path), result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
