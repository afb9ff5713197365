#!/usr/bin/env bash
# The main job on a machine without Docker or a GPU: set up, start both services locally, prepare
# a synthetic Tiny ImageNet over HTTP, train a small ResNet on it, print where the results are.
#   ./scripts/demo.sh [--epochs N --classes N ...]   (see: .venv/bin/python scripts/run_local.py -h)
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export TF_CPP_MIN_LOG_LEVEL=2 KERAS_BACKEND=tensorflow PYTHONUNBUFFERED=1
exec .venv/bin/python scripts/run_local.py "$@"
