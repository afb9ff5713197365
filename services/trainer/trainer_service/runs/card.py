"""The model card of a run: ``model_card.json`` and ``MODEL.md`` in its folder (no Keras).

Written at the end of every run that finishes training (a resumed one included), from the files
the run wrote: the architecture and its size (closed form,
:mod:`trainer_service.model.architecture`), the resolved configuration (``config.json``), the
dataset version and classes it trained on (``dataset.json``), the final and best val top-1/top-5
(``history.json``, ``best.json``) and the evaluation of the checkpoint the predictions used
(``evaluation.json``), the exports, the date and the software versions. The JSON holds
everything; the Markdown is what a person reads.
"""

from __future__ import annotations

import platform
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

from datavolume.files import atomic_write_json, atomic_write_text, read_json
from datavolume.runs import RunFolder
from trainer_service.model.architecture import report
from trainer_service.runs.checkpoints import read_best
from trainer_service.runs.config import TrainConfig
from trainer_service.runs.history import read_history

#: Distributions whose versions the card records (those installed).
SOFTWARE = ("trainer-service", "keras", "tensorflow-cpu", "tensorflow", "jax", "jaxlib", "numpy")
#: Fields of the configuration the Markdown lists under "Training" (the JSON has them all).
TRAINING_FIELDS = (
    "recipe", "epochs", "batch_size", "optimizer", "learning_rate", "momentum", "nesterov",
    "schedule", "warmup_epochs", "weight_decay", "decoupled_weight_decay", "flip", "crop_padding",
    "resized_crop_scale", "mixup_alpha", "cutmix_alpha", "label_smoothing", "use_ema",
    "tta_flip", "zero_init_residual", "seed",
)  # fmt: skip
_SCORES = ("val_accuracy", "val_top5_accuracy", "val_loss")


def software_versions(backend: str) -> dict[str, str]:
    """Python, the Keras backend that trained, and the installed versions of :data:`SOFTWARE`."""
    versions = {"python": platform.python_version(), "keras_backend": backend}
    for name in SOFTWARE:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def build_card(
    run: RunFolder,
    exports: dict[str, str | None],
    backend: str,
    stopped_early: str | None = None,
) -> dict[str, Any]:
    """The card's content (see the module docstring) from the run folder's files."""
    config = TrainConfig.model_validate(read_json(run.config))
    dataset = read_json(run.dataset_record) or {}
    history = read_history(run)
    best = read_best(run)
    best_row = next((r for r in history if best and r["epoch"] == best["epoch"]), None)
    size = report(config.filters, config.levels, dataset.get("num_classes", 0))
    return {
        "run_id": run.root.name,
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": {
            "architecture": "pre-activation bottleneck ResNet",
            "width": config.width,
            "filters": config.filters,
            "levels": config.levels,
            "parameters": size["total_params"],
            "trainable_parameters": size["trainable_params"],
            "multiply_adds_per_image": size["macs_per_image"],
            "input": "uint8 RGB images [batch, 64, 64, 3], 0-255 (standardization inside)",
            "output": "logits [batch, classes], classes in dataset.classes order",
        },
        "dataset": dataset,
        "training": config.model_dump(mode="json"),
        "results": {
            "epochs_completed": history[-1]["epoch"] if history else 0,
            "stopped_early": stopped_early,
            "budget": read_json(run.budget, tolerate_corrupt=True),
            "final": _scores(history[-1]) if history else None,
            "best": _scores(best_row) if best_row else None,
            "evaluation": read_json(run.evaluation, tolerate_corrupt=True),
        },
        "exports": {"keras": run.model.name if run.model.is_file() else None, **exports},
        "software": software_versions(backend),
    }


def write_model_card(
    run: RunFolder,
    exports: dict[str, str | None],
    backend: str,
    stopped_early: str | None = None,
) -> dict[str, Any]:
    """Write ``model_card.json`` and ``MODEL.md``; returns the card."""
    card = build_card(run, exports, backend, stopped_early)
    atomic_write_json(run.card_json, card)
    atomic_write_text(run.card_markdown, markdown(card))
    return card


def markdown(card: dict[str, Any]) -> str:
    """The card for people: the model, its scores, how to use it, training, data, software."""
    model, data, results = card["model"], card["dataset"], card["results"]
    lines = [
        f"# Model card: run {card['run_id']}",
        "",
        f"A {model['architecture']} (width {model['width']}: {model['filters']} filters at the "
        f"first level; bottleneck repeats per level {model['levels']}), "
        f"{model['parameters']:,} parameters, {model['multiply_adds_per_image'] / 1e9:.3f} G "
        f"multiply-adds per image, trained from scratch on `{data.get('name')}` "
        f"(version `{data.get('version')}`, {data.get('num_classes')} classes).",
        "",
        "## Results (val split)",
        "",
        "| | epoch | top-1 | top-5 | loss |",
        "|---|---|---|---|---|",
    ]
    evaluation = results.get("evaluation") or {}
    flipped = " (flip-averaged)" if evaluation.get("tta_flip") else ""
    rows = [
        ("best epoch", results.get("best")),
        ("final epoch", results.get("final")),
        (f"best checkpoint, as evaluated{flipped}", evaluation),
    ]
    for label, row in rows:
        if row:
            lines.append(
                f"| {label} | {row.get('epoch', '')} | {_pct(row.get('val_accuracy'))} | "
                f"{_pct(row.get('val_top5_accuracy'))} | {_num(row.get('val_loss'))} |"
            )
    exports = [f"`{name}`" for name in card["exports"].values() if name]
    lines += [
        "",
        "## Use",
        "",
        f"Input: {model['input']}. Output: {model['output']}.",
        f'Files: {", ".join(exports)} (see the project README, "Using the trained model").',
        "",
        "## Training",
        "",
        *(f"- {key}: `{card['training'].get(key)}`" for key in TRAINING_FIELDS),
        f"- every value: `config.json`; epochs completed: {results['epochs_completed']}"
        + (f" (stopped early: {results['stopped_early']})" if results["stopped_early"] else "")
        + (
            f"; time budget: {b['budget_min']:g} min, {b['epochs']} epochs"
            if (b := results["budget"])
            else ""
        ),
        "",
        "## Data",
        "",
        f"- dataset `{data.get('name')}`, version `{data.get('version')}`"
        + (f", metadata SHA-256 `{digest}`" if (digest := data.get("metadata_sha256")) else ""),
        "",
        "| index | wnid | words |",
        "|---|---|---|",
        *(f"| {c['index']} | {c['wnid']} | {c['words']} |" for c in data.get("classes", [])),
        "",
        "## Software",
        "",
        *(f"- {name} {version}" for name, version in card["software"].items()),
        "",
        f"Written {card['written_at']}.",
        "",
    ]
    return "\n".join(lines)


def _scores(row: dict[str, Any]) -> dict[str, Any]:
    return {"epoch": row["epoch"], **{key: row.get(key) for key in _SCORES}}


def _pct(value: float | None) -> str:
    return f"{value:.2%}" if isinstance(value, int | float) else ""


def _num(value: float | None) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) else ""
