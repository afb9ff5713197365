"""Trainer service: trains the bottleneck ResNet from the dataset service's shards."""

import os

# TensorFlow 2.21's oneDNN CPU kernels corrupt the heap ("double free or corruption", SIGSEGV)
# when training this pre-activation ResNet without XLA; the plain Eigen kernels are fine. The
# variable is read once, when TensorFlow is imported, so it is set here, before any import of
# TensorFlow by the trainer (the worker imports this package first). setdefault: an explicit
# TF_ENABLE_ONEDNN_OPTS=1 in the environment still wins.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
