#!/usr/bin/env bash
# Create .venv (Python >= 3.11) and install the pinned development environment plus the project's
# six packages in editable mode (the libraries in shared/, the services, the client). Re-running is cheap: it reinstalls only when the lock changed.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-}
if [[ -z "$python" ]]; then
  for candidate in python3.11 python3.12 python3.13 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
      python=$candidate
      break
    fi
  done
fi
[[ -n "$python" ]] || { echo "setup: Python >= 3.11 is required" >&2; exit 1; }

[[ -x .venv/bin/python ]] || "$python" -m venv .venv
stamp=.venv/.installed-lock
want=$(cat requirements/dev.lock shared/*/pyproject.toml services/*/pyproject.toml client/pyproject.toml \
  | sha256sum | cut -d' ' -f1)
if [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  echo "setup: installing the pinned environment into .venv (first run takes a few minutes)"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -r requirements/dev.lock
  .venv/bin/python -m pip install --quiet --no-deps \
    -e shared/shard_format -e shared/datavolume -e shared/jobkit \
    -e services/dataset -e services/trainer -e client
  echo "$want" > "$stamp"
fi
