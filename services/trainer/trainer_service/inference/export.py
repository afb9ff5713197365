"""``python -m trainer_service.inference.export``: a run's model as a TF SavedModel and as ONNX.

    python -m trainer_service.inference.export --run-dir /data/runs/<id> [--checkpoint final]

Writes ``savedmodel/`` (signature ``serve``: uint8 images ``[B, 64, 64, 3]`` -> logits; the
standardization is inside) and ``model.onnx`` (input ``images``, the same contract) into the run
folder, each under a temporary name first, then renamed. They compute what the run's evaluation
computed: the moving-average weights with ``use_ema``, logits averaged with the mirror image's
with ``tta_flip``.

**Always on the TensorFlow backend, whichever backend trained the model.** A ``.keras`` file is
backend-independent, so this process loads it with Keras on TensorFlow (on the CPU) and exports
plain TensorFlow ops: the SavedModel serves in TF Serving without XLA, and ``tf2onnx`` converts it
to ONNX (Keras's own ``export(format=...)`` in both cases). Exporting from JAX instead would embed
the computation as an ``XlaCallModule`` op, which neither TF Serving without XLA nor tf2onnx runs.
A run exports in such a process at its end (:func:`export_in_subprocess`); this command exports
any run or checkpoint again.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from datavolume.files import read_json, replacing
from datavolume.runs import RunFolder
from jobkit.errors import summary_line
from trainer_service import TENSORFLOW_ENV
from trainer_service.inference.process import ProcessFailed, run_json_process
from trainer_service.runs.checkpoints import FINAL, resolve_model

FORMATS = ("savedmodel", "onnx")
#: The export process's environment: Keras on TensorFlow, on the CPU.
EXPORT_ENV = {
    **TENSORFLOW_ENV,
    "KERAS_BACKEND": "tensorflow",
    "CUDA_VISIBLE_DEVICES": "",
    "TF_CPP_MIN_LOG_LEVEL": "2",
}
EXPORT_TIMEOUT_S = 1800


def export_model(model, run: RunFolder, formats: tuple[str, ...] = FORMATS) -> dict[str, Any]:
    """Export ``model`` (Keras on TensorFlow) into ``run``'s folder in each of ``formats``.

    Returns ``{format: file name or None}`` and, for each format that failed, its error under
    ``errors`` (an export that fails leaves nothing behind, and the previous one stays)."""
    out: dict[str, Any] = {name: None for name in formats}
    errors = {}
    if "savedmodel" in formats:
        temp = run.savedmodel_temp
        shutil.rmtree(temp, ignore_errors=True)
        try:
            model.export(str(temp), format="tf_saved_model", verbose=False)
            shutil.rmtree(run.savedmodel, ignore_errors=True)
            os.replace(temp, run.savedmodel)
            out["savedmodel"] = run.savedmodel.name
        except Exception as exc:  # every failure is reported, none ends the run
            shutil.rmtree(temp, ignore_errors=True)
            errors["savedmodel"] = summary_line(str(exc))
    if "onnx" in formats:
        try:
            with replacing(run.onnx, run.onnx.suffix) as temp:
                model.export(str(temp), format="onnx", verbose=False)
            out["onnx"] = run.onnx.name
        except Exception as exc:
            errors["onnx"] = summary_line(str(exc))
    if errors:
        out["errors"] = errors
    return out


def export_in_subprocess(
    run: RunFolder, formats: tuple[str, ...], checkpoint: str = FINAL, timeout_s=EXPORT_TIMEOUT_S
) -> dict[str, Any]:
    """Run this module on ``run`` in a process of its own (Keras on TensorFlow, CPU) and return
    its answer; a process that fails or times out is reported under ``errors`` too."""
    command = [
        sys.executable, "-m", "trainer_service.inference.export", "--run-dir", str(run.root),
        "--checkpoint", checkpoint, "--formats", ",".join(formats), "--json",
    ]  # fmt: skip
    try:
        return run_json_process(
            command, {**os.environ, **EXPORT_ENV}, timeout_s, "the export process"
        )
    except ProcessFailed as exc:
        return {**dict.fromkeys(formats), "errors": dict.fromkeys(formats, str(exc))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trainer_service.inference.export",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--run-dir", type=Path, required=True, help="the run folder")
    parser.add_argument(
        "--checkpoint", default=FINAL, help="final (model.keras; default), best, latest, N, ..."
    )
    parser.add_argument(
        "--formats", default=",".join(FORMATS), help="comma separated: savedmodel,onnx"
    )
    parser.add_argument("--json", action="store_true", help="print the answer as one JSON line")
    args = parser.parse_args(argv)
    formats = tuple(f.strip() for f in args.formats.split(",") if f.strip())
    if not formats or any(f not in FORMATS for f in formats):
        parser.error(f"--formats: choose from {', '.join(FORMATS)}")
    run = RunFolder(args.run_dir)
    config = read_json(run.config, tolerate_corrupt=True)
    if config is None:
        parser.error(f"{args.run_dir} is not a run folder (no config.json)")
    try:
        path = resolve_model(run, args.checkpoint)
    except FileNotFoundError as exc:
        parser.error(str(exc))

    os.environ.update(EXPORT_ENV)  # before Keras and TensorFlow are imported
    from trainer_service.model.saved import load_for_inference

    model = load_for_inference(
        path, use_ema=bool(config.get("use_ema")), tta_flip=bool(config.get("tta_flip"))
    )
    result = {"checkpoint": path.name, **export_model(model, run, formats)}
    if args.json:
        print(json.dumps(result))
    else:
        for name in formats:
            print(f"{name}: {result[name] or 'FAILED: ' + result['errors'][name]}")
    return 1 if "errors" in result else 0


if __name__ == "__main__":
    sys.exit(main())
