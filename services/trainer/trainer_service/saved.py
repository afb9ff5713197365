"""Load what a run saved: ``model.keras`` and every checkpoint under ``checkpoints/``.

    from trainer_service.saved import load_model
    model = load_model("runs/<id>/model.keras")  # uint8 images [B, 64, 64, 3] -> logits

The files hold the project's own Keras objects (the ResNet's blocks, the ``Preprocess`` and
augmentation layers, the saved optimizer's learning-rate schedule); importing
:mod:`trainer_service.model` and :mod:`trainer_service.engine.schedule` registers them, which is
all :func:`load_model` adds to ``keras.saving.load_model``.
"""

from __future__ import annotations

from pathlib import Path


def register_custom_objects() -> None:
    """Register every class a run's saved files name (idempotent)."""
    import trainer_service.engine.schedule
    import trainer_service.model  # noqa: F401  (the layers)


def load_model(path: str | Path, *, compile: bool = True):
    """``keras.saving.load_model(path)`` with the project's classes registered."""
    import keras

    register_custom_objects()
    return keras.saving.load_model(path, compile=compile)
