"""Container HEALTHCHECK: ``python -m jobkit.healthcheck PORT_ENV_VAR`` GETs /healthz on loopback.

The slim images have no curl; this needs nothing beyond the standard library.
"""

from __future__ import annotations

import os
import sys
import urllib.request


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m jobkit.healthcheck PORT_ENV_VAR", file=sys.stderr)
        return 2
    port = os.environ.get(argv[0])
    if not port:
        print(f"{argv[0]} is not set", file=sys.stderr)
        return 2
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as response:
            return 0 if response.status == 200 else 1
    except OSError as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
