#!/usr/bin/env bash
# Every check the project has: lint, format, compose and Dockerfile checks, then all tests,
# the container test (tests/compose: images built, the stack up, the README's HTTP flow) included
# whenever a Docker engine answers. It never installs system packages: .ci/run starts an engine.
#   ./scripts/test.sh            # everything
#   ./scripts/test.sh -k writer  # extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
source .venv/bin/activate
source scripts/container-env.sh
export TF_CPP_MIN_LOG_LEVEL=2 KERAS_BACKEND=tensorflow

echo "== ruff"
ruff check .
ruff format --check .
echo "== docker compose config (no engine needed)"
docker-compose -f docker-compose.yml config --quiet
docker-compose -f docker-compose.yml -f docker/compose.cpu.yml config --quiet
echo "== hadolint"
hadolint docker/Dockerfile
if engine_answers && prepare_container_build; then
  echo "== container test: a Docker engine answers; tests/compose builds the images and runs the stack"
  export CONTAINER_TEST=require
  pytest_args=()
elif [[ "${CONTAINER_TEST:-}" == require ]]; then
  echo "== container test required, but no Docker engine (with compose and a base image) is usable" >&2
  exit 1
else
  echo "== container test: NOT RUN: no Docker engine (with compose and a base image) answers here"
  pytest_args=(--ignore=tests/compose)
fi
echo "== pytest"
pytest --durations=12 "${pytest_args[@]}" "$@"
