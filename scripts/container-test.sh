#!/usr/bin/env bash
# The container test alone: build the three images, bring the CPU stack up with compose, and
# drive it over HTTP as the README does (tests/compose). Needs a running Docker engine with the
# compose plugin; extra arguments go to pytest.
#   ./scripts/container-test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/container-env.sh
engine_answers || { echo "container-test: no Docker engine (with compose) answers here" >&2; exit 1; }
prepare_container_build
./scripts/setup.sh
source .venv/bin/activate
CONTAINER_TEST=require exec pytest tests/compose -p no:cacheprovider "$@"
