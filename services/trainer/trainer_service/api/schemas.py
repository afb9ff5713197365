"""What the API returns about runs, and the resume route's body (the run request's body is
``trainer_service.runs.config.TrainConfig``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from jobkit.models import JobPublic
from trainer_service.runs.checkpoints import CHECKPOINT_NAME_PATTERN


class CheckpointInfo(BaseModel):
    file: str = Field(..., description="File name in the run's checkpoints folder.")
    path: str = Field(
        ..., description="Path relative to the data root (usable as init_checkpoint)."
    )
    kind: str = Field(..., description='"epoch", "best" or "partial" (stopped mid-epoch).')
    epoch: int | None = Field(None, description="Completed epochs in the checkpoint.")
    val_accuracy: float | None = None
    size_bytes: int
    modified_at: float = Field(..., description="Unix time.")
    latest: bool = Field(False, description="The checkpoint a resume starts from.")


class TrainingStatus(BaseModel):
    epoch: int | None = Field(None, description="Epoch in progress (1-based), or the last one.")
    epochs: int | None = Field(None, description="Epochs the run trains in total.")
    step: int | None = Field(None, description="Batches done in the current epoch.")
    steps_per_epoch: int | None = None
    completed_epochs: int = Field(0, description="Epochs saved in a checkpoint.")
    images_per_s: float | None = None
    eta_s: float | None = Field(None, description="Seconds left for the whole run (estimate).")
    learning_rate: float | None = None
    last_epoch: dict[str, Any] | None = Field(None, description="The latest history row.")
    budget: dict[str, Any] | None = Field(
        None,
        description="With time_budget_min, once the first epoch set it: {budget_min, "
        "first_epoch_s, epochs}.",
    )


class SweepTrial(BaseModel):
    sweep: str = Field(..., description="The sweep (GET /v1/sweeps/{sweep}).")
    number: int = Field(..., description="The trial's number in it.")


class RunDataset(BaseModel):
    name: str
    version: str | None = Field(None, description="The version folder the run reads.")
    metadata_sha256: str | None = None
    available: bool = Field(..., description="That version is still on the volume.")
    current: bool = Field(
        ..., description="It is still the dataset's current version (false: re-prepared since)."
    )


class RunPublic(JobPublic):
    """A training run: the job fields plus training progress and checkpoints."""

    run_dir: str = Field(..., description="The run folder, relative to the data root.")
    training: TrainingStatus = Field(default_factory=TrainingStatus)
    checkpoints: list[CheckpointInfo] = Field(default_factory=list)
    exports: dict[str, str] = Field(
        default_factory=dict,
        description='The final model\'s files by format ("keras", "savedmodel", "onnx"), '
        "relative to the data root; present once the run has written them.",
    )
    dataset: RunDataset | None = Field(
        None, description="The dataset version the run began with (it reads it to its end)."
    )
    model_card: str | None = Field(
        None, description="The run's MODEL.md (relative to the data root), once written."
    )
    trial: SweepTrial | None = Field(
        None,
        description="Set for a sweep's trial. A trial its sweep pruned ends succeeded at an "
        'epoch\'s end with result.stopped_early "pruned" (its checkpoints kept, no final model).',
    )


class RunList(BaseModel):
    items: list[RunPublic]


class ResumeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    checkpoint: str | None = Field(
        None,
        pattern=CHECKPOINT_NAME_PATTERN,
        description='Resume from this checkpoint: "latest" (default), "best", N or '
        "epoch-000N.keras. Later checkpoints and history rows are discarded.",
    )


class RecipePublic(BaseModel):
    name: str
    summary: str
    values: dict[str, Any] = Field(
        ..., description="Every field the recipe decides, as it resolves them."
    )


class RecipeList(BaseModel):
    default: str = Field(..., description="The recipe of a run that names none.")
    items: list[RecipePublic]


class PredictedClass(BaseModel):
    index: int = Field(..., description="The model's output index.")
    wnid: str
    words: str = Field(..., description="The class's names from words.txt.")
    probability: float = Field(..., description="Softmax of the logits.")


class ImagePrediction(BaseModel):
    image: str = Field(..., description="The file's name, as sent (reduced to a base name).")
    top: list[PredictedClass] | None = Field(
        None, description="The most probable classes, most probable first."
    )
    error: str | None = Field(None, description="Why the file was not classified.")


class Prediction(BaseModel):
    run: str
    checkpoint: str = Field(..., description="The file that classified the images.")
    epoch: int | None = Field(
        None,
        description="Completed epochs in that file, as the run's checkpoint index says "
        "(null for the final model, or while best.json is being rewritten).",
    )
    tta_flip: bool = Field(..., description="Logits averaged with the mirror image's.")
    items: list[ImagePrediction] = Field(..., description="One per file, in the order sent.")
