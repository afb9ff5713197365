"""What a run saved, loaded back: ``model.keras`` and every checkpoint under ``checkpoints/``.

Importing this module registers every class the files name (the blocks, ``Preprocess``,
``Augment``, ``Mirror``, and the ``EpochSchedule`` a checkpoint's optimizer holds), so plain Keras
loads them::

    import keras
    import trainer_service.model.saved  # registers the project's classes with Keras
    model = keras.saving.load_model("runs/<id>/model.keras")  # uint8 images -> logits

``model.keras`` is an inference model: the network with its final weights, no optimizer
(:func:`inference_copy`). A checkpoint is the network with its optimizer's state (what a resume
needs); :func:`load_for_inference` turns either into what the run scores with.
"""

from __future__ import annotations

from pathlib import Path

import keras

# The classes a saved file names, registered with Keras when imported (blocks, Preprocess and
# its former name, Augment and Mirror, EpochSchedule).
from trainer_service.model import blocks, preprocess, schedule  # noqa: F401
from trainer_service.model.augment import flip_averaging_model


def load_model(path: str | Path, *, compile: bool = True) -> keras.Model:
    """``keras.saving.load_model(path)`` (the project's classes are registered)."""
    return keras.saving.load_model(path, compile=compile)


def load_for_inference(path: str | Path, *, use_ema: bool = False, tta_flip: bool = False):
    """The model in ``path`` as the run scores with it: image -> logits.

    ``use_ema``: a checkpoint holds the raw weights and, in its optimizer, their moving
    averages; those are put in place (``model.keras`` has them in place already and no
    optimizer). ``tta_flip``: logits averaged with the mirror image's."""
    model = load_model(path, compile=use_ema)
    optimizer = getattr(model, "optimizer", None)
    if use_ema and optimizer is not None and optimizer.use_ema:
        optimizer.finalize_variable_values(model.trainable_variables)
    return flip_averaging_model(model) if tta_flip else model


def inference_copy(model: keras.Model) -> keras.Model:
    """``model`` without its optimizer: the same layers and weights, not compiled (what
    ``model.keras`` holds: it loads with Keras and this module alone)."""
    copy = type(model).from_config(model.get_config())  # clone_model would compile it too
    copy.set_weights(model.get_weights())
    return copy
