"""The served models: an export is used only when its metadata names the checkpoint version it
was made from; the cache keeps at most ``max_models`` (least recently used out), reloads a file
that changed, frees idle models, and loads a model once however many ask for it at once.

The exports here are tiny ONNX models made with ``onnx.helper`` (the real export is
``tests/trainer/inference/test_classify.py``'s and the live service tests')."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from datavolume.runs import RunFolder
from trainer_service.inference.models import (
    ModelCache,
    ModelLoader,
    ModelUnavailable,
    RuntimeOptions,
    ServedModel,
    serving_tags,
    tagged_version,
)
from trainer_service.runs.checkpoints import ModelFile


def write_export(path: Path, tags: dict[str, str]) -> None:
    """An "export": uint8 images [N, 64, 64, 3] -> their mean as one logit."""
    graph = helper.make_graph(
        [helper.make_node("Cast", ["images"], ["f"], to=TensorProto.FLOAT),
         helper.make_node("ReduceMean", ["f"], ["logits"], axes=[1, 2], keepdims=0)],
        "mean",
        [helper.make_tensor_value_info("images", TensorProto.UINT8, [None, 64, 64, 3])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, 3])],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    helper.set_model_props(model, tags)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


@pytest.fixture
def run(tmp_path) -> RunFolder:
    run = RunFolder(tmp_path / "runs" / "abc")
    run.make()
    run.best.write_bytes(b"a checkpoint")
    return run


def test_the_tags_name_the_version_they_were_made_from():
    version = ModelFile("best.keras", 123, 456789)
    tags = serving_tags(version, 7, use_ema=True, tta_flip=False)
    assert tags == {"source": "best.keras", "source_size": "123", "source_mtime_ns": "456789",
                    "epoch": "7", "use_ema": "true", "tta_flip": "false"}  # fmt: skip
    assert tagged_version(tags) == version
    assert serving_tags(version, None, use_ema=False, tta_flip=True)["epoch"] == ""
    assert tagged_version({"source": "best.keras"}) is None


def test_an_export_of_this_version_is_loaded_without_exporting(run):
    version = ModelFile.of(run.best)
    write_export(run.serving_export(run.best), serving_tags(version, 3, use_ema=False,
                                                            tta_flip=True))  # fmt: skip
    loader = ModelLoader(RuntimeOptions(threads=1), export_timeout_s=5)
    served = loader.load(run, run.best)
    assert (served.version, served.epoch, served.tta_flip) == (version, 3, True)
    assert loader.exports == 0
    images = np.full((2, 64, 64, 3), 4, np.uint8)
    np.testing.assert_allclose(served.logits(images), np.full((2, 3), 4.0))


def test_an_export_of_another_version_is_exported_again(run, monkeypatch):
    old = ModelFile(run.best.name, 1, 1)
    write_export(run.serving_export(run.best), serving_tags(old, 1, use_ema=False,
                                                            tta_flip=False))  # fmt: skip
    loader = ModelLoader(RuntimeOptions(threads=1), export_timeout_s=5)
    exported = []

    def export(run: RunFolder, path: Path) -> None:  # what the export process would write
        exported.append(path.name)
        tags = serving_tags(ModelFile.of(path), 2, use_ema=False, tta_flip=False)
        write_export(run.serving_export(path), tags)

    monkeypatch.setattr(loader, "_export", export)
    served = loader.load(run, run.best)
    assert exported == ["best.keras"] and served.epoch == 2


def test_a_failed_export_is_reported(run):
    loader = ModelLoader(RuntimeOptions(threads=1), export_timeout_s=60)
    with pytest.raises(ModelUnavailable) as failed:  # no config.json: the export refuses
        loader.load(run, run.best)
    assert str(failed.value).startswith(
        "exporting best.keras for the predictor: the export process failed (exit 2)"
    )


class Loads:
    """A loader of fake models, counting its loads; each load waits for ``gate``."""

    def __init__(self) -> None:
        self.count = 0
        self.gate = threading.Event()
        self.gate.set()
        self.fail = False

    def __call__(self, run: RunFolder, path: Path) -> ServedModel:
        self.gate.wait(30)
        self.count += 1
        if self.fail:
            raise ModelUnavailable("no")
        return ServedModel(run, path, ModelFile.of(path), None, False, session=object())


def checkpoints(run: RunFolder, n: int) -> list[Path]:
    paths = [run.epoch_checkpoint(i) for i in range(1, n + 1)]
    for path in paths:
        path.write_bytes(b"x")
    return paths


def test_at_most_max_models_the_least_recently_used_out(run):
    loads = Loads()
    cache = ModelCache(loads, max_models=2, idle_s=600)
    one, two, three = checkpoints(run, 3)
    first = cache.get(run, one)
    cache.get(run, two)
    assert cache.get(run, one) is first and loads.count == 2  # warm
    cache.get(run, three)  # two was the least recently used
    assert [m.path.name for m in cache.models()] == [one.name, three.name]
    assert (cache.loads, cache.freed) == (3, 1)


def test_a_changed_file_is_loaded_again_and_the_old_model_dropped(run):
    loads = Loads()
    cache = ModelCache(loads, max_models=4, idle_s=600)
    first = cache.get(run, run.best)
    replacement = run.best.with_name(".new")
    replacement.write_bytes(b"a better checkpoint")
    replacement.replace(run.best)  # as every checkpoint is written
    second = cache.get(run, run.best)
    assert second is not first and second.version == ModelFile.of(run.best)
    assert cache.models() == [second] and loads.count == 2


def test_idle_models_are_freed_after_idle_s(run):
    now = [100.0]
    cache = ModelCache(Loads(), max_models=4, idle_s=10, clock=lambda: now[0])
    one, two = checkpoints(run, 2)
    cache.get(run, one)
    now[0] = 105.0
    cache.get(run, two)
    now[0] = 111.0
    assert [m.path.name for m in cache.free_idle()] == [one.name]
    assert [m.path.name for m in cache.models()] == [two.name]
    now[0] = 116.0
    cache.free_idle()
    assert cache.models() == [] and cache.freed == 2


def test_a_model_asked_for_at_once_is_loaded_once(run):
    loads = Loads()
    loads.gate.clear()
    cache = ModelCache(loads, max_models=4, idle_s=600)
    got: list = []
    threads = [threading.Thread(target=lambda: got.append(cache.get(run, run.best, 30)))
               for _ in range(5)]  # fmt: skip
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    loads.gate.set()
    for thread in threads:
        thread.join(30)
    assert loads.count == 1 and len(got) == 5 and all(m is got[0] for m in got)


def test_a_failed_load_fails_its_waiters_and_the_next_request_tries_again(run):
    loads = Loads()
    loads.fail = True
    cache = ModelCache(loads, max_models=4, idle_s=600)
    with pytest.raises(ModelUnavailable):
        cache.get(run, run.best)
    loads.fail = False
    assert cache.get(run, run.best).path == run.best and loads.count == 2
    with pytest.raises(FileNotFoundError):
        cache.get(run, run.partial)
