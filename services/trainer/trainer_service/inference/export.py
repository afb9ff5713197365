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

``--serving`` makes the export the predictor serves a checkpoint from instead
(``serving/<checkpoint>.onnx``, the same ONNX model with what it was made from in its metadata:
:mod:`.models`); the predictor runs it on a checkpoint's first use.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from datavolume.files import TEMP_NAME, read_json, replacing
from datavolume.runs import RunFolder
from jobkit.errors import summary_line
from trainer_service.inference.models import serving_tags
from trainer_service.inference.process import (
    EXPORT_ENV,
    EXPORT_MODULE,
    ProcessFailed,
    run_json_process,
)
from trainer_service.runs.checkpoints import FINAL, ModelFile, checkpoint_epoch, resolve_model

FORMATS = ("savedmodel", "onnx")
EXPORT_TIMEOUT_S = 1800
#: Older than any export may run: a temporary file this old was left by a killed export.
STALE_TEMPORARY_S = 2 * 3600


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


def export_serving(
    model, run: RunFolder, path: Path, version: ModelFile, *, use_ema: bool, tta_flip: bool
) -> Path:
    """The predictor's export of ``version`` of the model file ``path`` (``model`` loaded from
    it, Keras on TensorFlow): ``serving/<stem>.onnx``, its metadata naming what it was made from
    (:func:`~.models.serving_tags`). Written under a temporary name, then renamed."""
    import onnx  # tf2onnx's own dependency

    target = run.serving_export(path)
    remove_stale_temporaries(target.parent)
    tags = serving_tags(version, checkpoint_epoch(run, path, version), use_ema=use_ema,
                        tta_flip=tta_flip)  # fmt: skip
    with replacing(target, target.suffix) as temp:
        model.export(str(temp), format="onnx", verbose=False)
        proto = onnx.load(str(temp))
        onnx.helper.set_model_props(proto, tags)
        onnx.save(proto, str(temp))
    return target


def remove_stale_temporaries(folder: Path, age_s: float = STALE_TEMPORARY_S) -> None:
    """Delete the temporary files an export killed mid-write left in ``folder`` (those older
    than ``age_s``: a younger one may be another export's, still being written). The worker's
    ``RunFolder.remove_temporaries`` leaves this folder alone for that reason."""
    now = time.time()
    for path in folder.glob(".*.tmp*"):
        with contextlib.suppress(OSError):
            if TEMP_NAME.match(path.name) and now - path.stat().st_mtime > age_s:
                path.unlink()


def called(model):
    """``model`` after one call on a blank image: Keras's ONNX export refuses a model that was
    never called, which a model loaded from a file is not."""
    import numpy as np

    model(np.zeros((1, *model.input.shape[1:]), dtype=model.input.dtype))
    return model


def export_in_subprocess(
    run: RunFolder, formats: tuple[str, ...], checkpoint: str = FINAL, timeout_s=EXPORT_TIMEOUT_S
) -> dict[str, Any]:
    """Run this module on ``run`` in a process of its own (Keras on TensorFlow, CPU) and return
    its answer; a process that fails or times out is reported under ``errors`` too."""
    command = [
        sys.executable, "-m", EXPORT_MODULE, "--run-dir", str(run.root),
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
    parser.add_argument(
        "--serving",
        action="store_true",
        help="make the predictor's export of the checkpoint (serving/<checkpoint>.onnx) instead",
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

    use_ema, tta_flip = bool(config.get("use_ema")), bool(config.get("tta_flip"))
    if args.serving:
        return serve_export(run, path, use_ema, tta_flip)
    model = called(load_for_inference(path, use_ema=use_ema, tta_flip=tta_flip))
    result = {"checkpoint": path.name, **export_model(model, run, formats)}
    if args.json:
        print(json.dumps(result))
    else:
        for name in formats:
            print(f"{name}: {result[name] or 'FAILED: ' + result['errors'][name]}")
    return 1 if "errors" in result else 0


def serve_export(run: RunFolder, path: Path, use_ema: bool, tta_flip: bool) -> int:
    """``--serving``: export the version of ``path`` that was loaded (a checkpoint replaced
    while it loads is loaded again); print the answer as one JSON line."""
    from trainer_service.model.saved import load_for_inference

    for _ in range(3):
        version = ModelFile.of(path)
        model = load_for_inference(path, use_ema=use_ema, tta_flip=tta_flip)
        if ModelFile.of(path) == version:
            break
    else:
        print(f"{path.name} changed while it was loaded, three times", file=sys.stderr)
        return 1
    target = export_serving(called(model), run, path, version, use_ema=use_ema, tta_flip=tta_flip)
    print(json.dumps({"checkpoint": path.name, "serving": str(target.relative_to(run.root))}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
