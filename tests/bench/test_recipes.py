"""The recipe benchmarks' plumbing: the sets where augmentation decides (written in the archive's
layout, prepared by the project's prepare), the arms, the options, the tables. No accuracy or
timing is asserted here: BENCHMARKS.md holds the measured ones."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from bench import recipe_step, recipes
from bench.common import RunInfo
from bench.recipe_data import RecipeDataSpec, class_shapes, write_tree
from bench.recipe_variants import FEATURES, OFF, step_variants
from dataset_service.layout import validate
from dataset_service.tree import DiskTree
from trainer_service.runs.config import TrainConfig
from trainer_service.runs.recipes import RECIPES

INFO = RunInfo(command="python -m bench.recipes", repeats=2, machine="test box", date="today")


def _small(variant):
    return RecipeDataSpec(variant=variant, classes=4, train_per_class=3, val_per_class=2,
                          test_images=2)  # fmt: skip


@pytest.mark.parametrize("variant", ["shift", "mirror"])
def test_a_set_is_a_valid_tiny_imagenet_tree(tmp_path, variant):
    spec = _small(variant)
    layout = validate(DiskTree(write_tree(tmp_path, spec)))
    assert len(layout.wnids) == 4
    assert all(len(files) == 3 for files in layout.train.values())
    assert len(layout.val) == 8 and len(layout.test) == 2


def test_the_same_spec_gives_the_same_images(tmp_path):
    a, b = write_tree(tmp_path / "a", _small("shift")), write_tree(tmp_path / "b", _small("shift"))
    files = sorted(p.relative_to(a) for p in a.rglob("*.JPEG"))
    assert files and all((a / f).read_bytes() == (b / f).read_bytes() for f in files)


def _boxes(path):
    return [line.split("\t") for line in path.read_text().splitlines()]


def test_shift_centres_train_objects_and_moves_val_ones(tmp_path):
    spec = RecipeDataSpec(classes=3, train_per_class=5, val_per_class=20, test_images=1)
    tree = write_tree(tmp_path, spec)
    centre = (64 - spec.object_size) // 2
    for boxes in (tree / "train").glob("*/*_boxes.txt"):
        assert {(int(b[1]), int(b[2])) for b in _boxes(boxes)} == {(centre, centre)}
    val = _boxes(tree / "val" / "val_annotations.txt")
    offsets = {(int(b[2]) - centre, int(b[3]) - centre) for b in val}
    sizes = {int(b[4]) - int(b[2]) for b in val}
    assert len(offsets) > 10 and max(abs(o) for pair in offsets for o in pair) <= 6 + 4
    assert min(sizes) < spec.object_size < max(sizes)


def test_mirror_classes_come_in_mirrored_pairs():
    shapes = class_shapes(RecipeDataSpec(variant="mirror", classes=4))
    for (name, polygon), (mirror_name, mirrored) in zip(shapes[::2], shapes[1::2], strict=True):
        assert mirror_name == f"{name}-mirrored"
        assert mirrored == [(1.0 - x, y) for x, y in polygon]
        assert mirrored != polygon  # asymmetric: the flip changes the class


def test_a_mirrored_object_is_the_other_class_drawn():
    """Drawn at the centre, the mirror class is exactly the left-right mirror of the first, and
    not the first itself."""

    def mask(polygon):
        canvas = Image.new("L", (64, 64))
        ImageDraw.Draw(canvas).polygon([(19 + x * 26, 19 + y * 26) for x, y in polygon], fill=1)
        return np.asarray(canvas, dtype=bool)

    shapes = class_shapes(RecipeDataSpec(variant="mirror", classes=10))
    for (_, polygon), (_, mirrored) in zip(shapes[::2], shapes[1::2], strict=True):
        a, b = mask(polygon), mask(mirrored)
        np.testing.assert_array_equal(a[:, ::-1], b)
        assert (a & b).sum() / b.sum() < 0.9


def test_bad_specs_are_refused():
    for bad in ({"variant": "rotate"}, {"classes": 1}, {"variant": "mirror", "classes": 5}):
        with pytest.raises(ValueError):
            RecipeDataSpec(**bad)


def test_every_option_and_arm_is_a_valid_run():
    for fields in (OFF, *FEATURES.values(), *step_variants().values()):
        TrainConfig(dataset="d", **{**OFF, **fields})
    tables = recipes.arms(epochs=30, batch=32, learning_rate=0.05)
    assert set(tables) == set(recipes.TABLES)
    for table in tables.values():
        for fields in table.values():
            config = TrainConfig(**{k: v for k, v in fields.items() if k != "set"}, dataset="d")
            assert (config.epochs, config.batch_size, config.learning_rate) == (30, 32, 0.05)
    homework, fast = tables["recipes"]["homework"], tables["recipes"]["fast"]
    assert homework["decay_epochs"] == [27]  # epoch 64 of 72, at 30 epochs
    assert fast["warmup_epochs"] == pytest.approx(5 * 30 / 80)
    for name, value in RECIPES["fast"].values.items():
        if name not in ("epochs", "batch_size", "learning_rate", "warmup_epochs"):
            assert fast[name] == value, name  # every other value as the recipe has it
    options = tables["options"]
    assert {k: options["none"][k] for k in OFF} == OFF
    assert tables["flip"]["homework, flip off"]["flip"] is False
    parts = tables["parts"]
    assert set(parts) == {f"fast, {part} off" for part in recipes.FAST_PARTS}
    for name, fields in parts.items():
        changed = {k for k in fields if fields[k] != fast.get(k)}
        assert changed and all(fields[k] == OFF[k] for k in changed), name  # only its part off
    flips_off = parts["fast, flip and test-time flip off"]
    assert (flips_off["flip"], flips_off["tta_flip"], flips_off["crop_padding"]) == (
        False,
        False,
        4,
    )


def _run(final, best=None, train=0.9):
    return {"final_val": final, "final_val_top5": 0.9, "best_val": best or final,
            "final_train": train, "seconds": 60.0}  # fmt: skip


def test_the_section_states_the_margins_per_seed():
    found = {
        "recipes": {"homework": [_run(0.2), _run(0.3)], "fast": [_run(0.5), _run(0.4)]},
        "parts": {"fast, flip and test-time flip off": [_run(0.7), _run(0.7)]},
        "options": {"none": [_run(0.2), _run(0.2)], "flip": [_run(0.1), _run(0.3)]},
        "flip": {"homework (flip on)": [_run(0.5), _run(0.5)],
                 "homework, flip off": [_run(0.9), _run(0.8)]},
    }  # fmt: skip
    args = recipes.add_arguments.__globals__["argparse"].Namespace(
        seeds=2, recipe_epochs=30, recipe_batch=32, recipe_width=16, recipe_levels=[1, 1, 1]
    )
    text = recipes.render(found, INFO, args)
    assert "fast - homework on the shift set: +20.0 points" in text
    assert "the smallest per-seed margin +10.0" in text
    assert "Turning the flip off on the mirror set: +35.0 points" in text
    assert "| fast | 45.0 ± 7.1 | 50.0, 40.0 | +20.0 (seeds +30.0, +10.0) |" in text
    # the parts table is relative to the fast runs of the recipes table
    assert (
        "| fast, flip and test-time flip off | 70.0 ± 0.0 | 70.0, 70.0 "
        "| +25.0 (seeds +20.0, +30.0) |" in text
    )
    with pytest.raises(ValueError, match="needs every table"):
        recipes.render({"recipes": found["recipes"]}, INFO, args)


def test_the_step_section_is_relative_to_none():
    found = {"none": {"train": [100.0, 110.0], "val": [300.0, 300.0]},
             "crop (padding 4)": {"train": [50.0, 55.0], "val": [300.0, 300.0]},
             "test-time flip": {"train": [100.0, 110.0], "val": [150.0, 150.0]}}  # fmt: skip
    args = recipe_step.add_arguments.__globals__["argparse"].Namespace(
        cost_width=32, cost_batch=32, cost_steps=10
    )
    text = recipe_step.render(found, INFO, args)
    assert "| crop (padding 4) | 52.5 (50.0..55.0) | 2.00x | 300.0 (300.0..300.0) | 1.00x |" in text
    assert (
        "| test-time flip | 105.0 (100.0..110.0) | 1.00x | 150.0 (150.0..150.0) | 2.00x |" in text
    )
