"""Test-wide settings: quiet TensorFlow, the TensorFlow Keras backend, the repo root on hand."""

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# TensorFlow 2.21's oneDNN CPU kernels crash training this ResNet without XLA (see
# trainer_service/__init__.py); the switch only counts before TensorFlow is first imported.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

REPO_ROOT = Path(__file__).resolve().parent.parent
