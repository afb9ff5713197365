"""MirroredStrategy: one epoch over two logical CPU devices, in a subprocess (logical devices
must be configured before TensorFlow initializes, and this process already initialized it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from datavolume.runs import RunFolder
from trainer_service.runs.history import read_history

REPO_ROOT = Path(__file__).resolve().parents[3]

SCRIPT = """
import json, sys
import trainer_service
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)
from tests.trainer.support import tiny_config
from trainer_service.engine.train import train

strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
config = tiny_config(epochs=1, limit_train_steps=3, limit_val_steps=2)
result = train(config, sys.argv[1], sys.argv[2], strategy=strategy)
print("RESULT " + json.dumps({"runtime": result.runtime, "stopped": result.stopped,
                              "replicas": strategy.num_replicas_in_sync}))
"""


def test_one_epoch_on_two_replicas(data_root, tmp_path):
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "KERAS_BACKEND": "tensorflow"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(run_dir), str(data_root)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(s for s in done.stdout.splitlines() if s.startswith("RESULT "))
    result = json.loads(line.removeprefix("RESULT "))
    assert result["replicas"] == 2 and result["runtime"]["replicas"] == 2
    assert result["stopped"] is False
    history = read_history(RunFolder(run_dir))
    assert [(r["epoch"], r["step"]) for r in history] == [(1, 3)]  # global batches, not x2
    assert RunFolder(run_dir).epoch_checkpoint(1).is_file()
