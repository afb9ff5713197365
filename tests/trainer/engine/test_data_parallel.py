"""Data-parallel training on the JAX backend: ``keras.distribution.DataParallel`` over every local
device, the global batch split across them. Here the devices are 2 virtual CPU devices
(``--xla_force_host_platform_device_count=2``) in a subprocess, running the real ``train()``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow

SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path

    import jax, keras
    from tests.trainer.support import tiny_config
    from trainer_service.engine import train as engine
    from jobkit.context import LocalContext
    from trainer_service.runs.history import read_history
    from datavolume.runs import RunFolder
    from trainer_service.engine.runtime import data_parallel

    data_root, run_dir = Path(sys.argv[1]), Path(sys.argv[2])
    try:
        data_parallel(15)
        uneven = None
    except ValueError as exc:
        uneven = str(exc)
    result = engine.train(tiny_config(epochs=1, batch_size=16), run_dir, data_root, LocalContext())
    distribution = keras.distribution.distribution()
    layout = distribution.get_data_layout((16, 64, 64, 3))
    print(json.dumps({
        "devices": [str(d) for d in jax.devices()],
        "runtime": result.runtime,
        "mesh_shape": list(distribution.device_mesh.shape),
        "batch_axis": layout.axes[0],
        "history": read_history(RunFolder(run_dir)),
        "uneven": uneven,
    }))
    """
)


def test_trains_data_parallel_over_two_virtual_devices(data_root, tmp_path):
    xla = (
        "--xla_force_host_platform_device_count=2 --xla_backend_optimization_level=0 "
        "--xla_llvm_disable_expensive_passes=true"
    )
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "XLA_FLAGS": xla}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(data_root), str(tmp_path / "run")],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=500,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(out["devices"]) == 2
    assert out["runtime"]["backend"] == "jax"
    assert out["runtime"]["replicas"] == 2 and out["runtime"]["data_parallel"] is True
    # The batch axis is sharded over the 2-device mesh: 8 images of each batch per device.
    assert out["mesh_shape"] == [2] and out["batch_axis"] == "batch"
    (row,) = out["history"]
    assert row["epoch"] == 1 and 0.0 <= row["val_accuracy"] <= 1.0
    assert "batch_size 15 does not split evenly across 2 devices" in out["uneven"]
