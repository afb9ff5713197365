"""Classifying image files with a run's checkpoint, by the code the service's predictor runs
(ONNX Runtime on the checkpoint's export, made on first use): the answer the run itself would give
(its moving-average weights and flip-averaged logits), the classes named from the run's dataset,
a file that is not an image answered with its reason while the others are classified, a run
folder alone enough, its export made once."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datavolume import DataRoot
from datavolume.runs import RunFolder
from jobkit.context import LocalContext
from shard_format.metadata import load_metadata
from tests.trainer.support import TOY, tiny_config
from trainer_service.engine import train as engine
from trainer_service.engine.data import test_images as read_test_images
from trainer_service.engine.data import val_pipeline
from trainer_service.inference.classify import main
from trainer_service.inference.predictor import top_classes
from trainer_service.model.saved import load_for_inference

CLASSES = [{"index": i, "wnid": f"n{i:08d}", "words": f"class {i}"} for i in range(4)]


@pytest.fixture(scope="module")
def run(toy_root: Path) -> RunFolder:
    """A finished run whose evaluation used moving-average weights and flip-averaged logits."""
    run = RunFolder(toy_root / "runs" / "classify")
    config = tiny_config(epochs=2, crop_padding=2, use_ema=True, ema_momentum=0.5, tta_flip=True)
    engine.train(config, run.root, toy_root, LocalContext())
    return run


@pytest.fixture(scope="module")
def test_split(run: RunFolder, toy_root: Path, tmp_path_factory) -> tuple[list[Path], list[str]]:
    """The dataset's test images as PNG files, and the wnid the run predicted for each."""
    folder = DataRoot(toy_root).dataset(TOY)
    out = tmp_path_factory.mktemp("test-images")
    paths = []
    for images, names in read_test_images(folder, load_metadata(folder), 8).as_numpy_iterator():
        for image, name in zip(images, names, strict=True):
            path = out / f"{Path(name.decode()).stem}.png"
            Image.fromarray(image).save(path)
            paths.append(path)
    predicted = dict(line.split() for line in run.predictions.read_text().splitlines())
    return paths, [predicted[f"{p.stem}.JPEG"] for p in paths]


@pytest.fixture(scope="module")
def val_split(run: RunFolder, toy_root: Path, tmp_path_factory) -> tuple[list[Path], list[int]]:
    """The dataset's val images as PNG files (lossless: the model sees the same pixels), and
    their labels."""
    folder = DataRoot(toy_root).dataset(TOY)
    out = tmp_path_factory.mktemp("val-images")
    paths, labels = [], []
    ds, _, _ = val_pipeline(folder, load_metadata(folder), 16)
    for images, batch_labels in ds.as_numpy_iterator():
        for image, label in zip(images, batch_labels, strict=True):
            paths.append(out / f"val-{len(paths):03d}.png")
            Image.fromarray(image).save(paths[-1])
            labels.append(int(label))
    return paths, labels


def classify(capsys, toy_root: Path, *args) -> tuple[int, dict]:
    code = main(["--data-root", str(toy_root), "--run", "classify", "--json", *map(str, args)])
    return code, json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_top_classes_are_the_softmax_in_order():
    logits = np.array([[0.0, 2.0, 1.0, -1.0], [5.0, 5.0, 0.0, 0.0]])
    first, second = top_classes(logits, CLASSES, 3)
    expected = np.exp([2.0, 1.0, 0.0]) / np.exp([0.0, 2.0, 1.0, -1.0]).sum()
    assert [c["index"] for c in first] == [1, 2, 0]
    assert [c["probability"] for c in first] == pytest.approx(expected, abs=1e-6)
    assert first[0] == {"index": 1, "wnid": "n00000001", "words": "class 1",
                        "probability": pytest.approx(expected[0], abs=1e-6)}  # fmt: skip
    assert [c["index"] for c in second[:2]] == [0, 1]  # a tie keeps the class order
    assert len(top_classes(logits, CLASSES, 10)[0]) == 4  # k is at most the class count


def test_the_answer_is_the_runs_own_prediction(capsys, toy_root, run, test_split):
    paths, predicted = test_split
    code, answer = classify(capsys, toy_root, *paths)
    assert code == 0
    assert answer["checkpoint"] == "best.keras" and answer["tta_flip"] is True
    assert [item["image"] for item in answer["items"]] == [p.name for p in paths]
    assert [item["top"][0]["wnid"] for item in answer["items"]] == predicted
    record = json.loads(run.dataset_record.read_text())
    for item in answer["items"]:
        top = item["top"]
        assert len(top) == 4 and sum(c["probability"] for c in top) == pytest.approx(1, abs=1e-5)
        assert all(a["probability"] >= b["probability"] for a, b in itertools.pairwise(top))
        for c in top:
            assert record["classes"][c["index"]]["wnid"] == c["wnid"]


def test_the_probabilities_are_those_the_run_scored_its_val_split_with(
    capsys, toy_root, run, val_split
):
    # The run's evaluation.json has the val loss of its best checkpoint (moving averages in
    # place, logits averaged with the mirror's), computed by the training code: the mean
    # cross-entropy of the answers here plus the weights' L2 penalty (which Keras adds to
    # every loss it reports) must be the same number.
    paths, labels = val_split
    code, answer = classify(capsys, toy_root, "--top", "4", *paths)
    assert code == 0
    probability = [
        next(c["probability"] for c in item["top"] if c["index"] == label)
        for item, label in zip(answer["items"], labels, strict=True)
    ]
    model = load_for_inference(run.best, use_ema=True, tta_flip=True)
    penalty = float(sum(np.asarray(loss) for loss in model.losses))
    evaluation = json.loads(run.evaluation.read_text())
    assert evaluation["checkpoint"] == "best.keras" and evaluation["tta_flip"] is True
    cross_entropy = -np.mean(np.log(probability))
    assert cross_entropy + penalty == pytest.approx(evaluation["val_loss"], rel=1e-4)


def test_a_file_that_is_not_an_image_is_answered_and_the_others_classified(
    capsys, toy_root, run, test_split, tmp_path
):
    paths, predicted = test_split
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture\n")
    code, answer = classify(capsys, toy_root, "--top", "2", paths[0], notes, paths[1])
    assert code == 1
    first, bad, last = answer["items"]
    assert bad == {"image": "notes.txt", "error": "not an image (no format Pillow reads)"}
    assert [first["top"][0]["wnid"], last["top"][0]["wnid"]] == predicted[:2]
    assert len(first["top"]) == 2


def test_the_final_model_and_an_epoch_checkpoint_answer_too(capsys, toy_root, run, test_split):
    paths, _ = test_split
    code, final = classify(capsys, toy_root, "--checkpoint", "final", paths[0])
    assert code == 0 and final["checkpoint"] == "model.keras"
    code, epoch = classify(capsys, toy_root, "--checkpoint", "1", paths[0])
    assert code == 0 and epoch["checkpoint"] == "epoch-0001.keras"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--run", "classify", "--checkpoint", "7"], "has no checkpoint epoch-0007.keras"),
        (["--run", "nosuchrun"], "no run 'nosuchrun'"),
    ],
)
def test_a_usage_error_exits_2_with_its_reason(capsys, toy_root, run, args, message, tmp_path):
    with pytest.raises(SystemExit) as exit:
        main(["--data-root", str(toy_root), *args, str(tmp_path / "x.png")])
    assert exit.value.code == 2 and message in capsys.readouterr().err


def test_a_run_folder_alone_answers_from_the_export_made_once(capsys, toy_root, run, test_split):
    paths, predicted = test_split
    classify(capsys, toy_root, paths[0])  # exports best.keras if no test did yet
    export = run.serving_export(run.best)
    made = export.stat().st_mtime_ns
    code = main(["--run-dir", str(run.root), "--json", str(paths[0])])
    answer = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and answer["run"] == "classify"
    assert answer["epoch"] == json.loads(run.best_json.read_text())["epoch"]
    assert answer["items"][0]["top"][0]["wnid"] == predicted[0]
    assert export.stat().st_mtime_ns == made  # loaded, not exported again
