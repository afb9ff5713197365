"""The training options the recipe benchmarks compare, defined once for the CPU step cost
(``bench.recipe_step``), the GPU step (``bench/gpu_step.py``) and the learning benchmark
(``bench.recipes``). Plain dicts of ``TrainConfig`` fields; no imports, so the GPU script can use
it wherever it runs.
"""

from __future__ import annotations

#: Every augmentation and regularizer off (the recipes' other fields are left as they are).
OFF: dict = {
    "flip": False,
    "crop_padding": 0,
    "resized_crop_scale": None,
    "mixup_alpha": 0.0,
    "cutmix_alpha": 0.0,
    "label_smoothing": 0.0,
    "tta_flip": False,
    "use_ema": False,
    "zero_init_residual": False,
    "decoupled_weight_decay": 0.0,
}

#: Each option alone, as the fields that turn it on (on top of ``OFF``), at a typical strength.
FEATURES: dict[str, dict] = {
    "flip": {"flip": True},
    "crop (padding 4)": {"crop_padding": 4},
    "resized crop (0.35-1)": {"resized_crop_scale": [0.35, 1.0]},
    "mixup 0.2": {"mixup_alpha": 0.2},
    "cutmix 1.0": {"cutmix_alpha": 1.0},
    "label smoothing 0.1": {"label_smoothing": 0.1},
    "test-time flip": {"tta_flip": True},
    "zero-init residual": {"zero_init_residual": True},
    "EMA 0.99": {"use_ema": True, "ema_momentum": 0.99},
}


def step_variants() -> dict[str, dict]:
    """The step-cost rows: nothing, each option alone, and the whole fast recipe. ``none`` is
    the homework's recipe without its flip; ``flip`` is the homework's recipe."""
    return {
        "none": dict(OFF),
        **{name: {**OFF, **fields} for name, fields in FEATURES.items()},
        "fast recipe (all of its options)": {"recipe": "fast"},
    }
