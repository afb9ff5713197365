#!/usr/bin/env bash
# Every check the project has: lint, format, compose and Dockerfile checks, then all tests.
#   ./scripts/test.sh            # everything
#   ./scripts/test.sh -k writer  # extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
source .venv/bin/activate
export TF_CPP_MIN_LOG_LEVEL=2 KERAS_BACKEND=tensorflow

echo "== ruff"
ruff check .
ruff format --check .
echo "== docker compose config (no engine needed)"
docker-compose -f docker-compose.yml config --quiet
docker-compose -f docker-compose.yml -f docker/compose.cpu.yml config --quiet
echo "== hadolint"
hadolint docker/dataset.Dockerfile docker/trainer.Dockerfile
echo "== pytest"
pytest "$@"
