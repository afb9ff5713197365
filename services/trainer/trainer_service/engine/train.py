"""Train the ResNet on a prepared dataset: ``train(config, run_dir, data_root, ctx)``.

:func:`train` reads top to bottom: the run's set-up (its folder, the dataset version it reads,
where it starts: :mod:`trainer_service.runs.resume`) and the tf.data pipelines (uint8 batches;
the model's first layer standardizes them and, in training only, augments them on the
accelerator); the model with its L2 weight decay, compiled with the optimizer and its epoch
schedule, sparse cross-entropy on logits, top-1 and top-5 accuracy; where the weights start (a
resume's checkpoint, or the warm-start weights); ``model.fit`` with the callbacks of
:mod:`.callbacks` and :mod:`.stopping`; then the final model (``model.keras``, an inference
model) and the evaluation of the best checkpoint (:mod:`.evaluate`). With a time budget and no
plan yet, the first epoch's pace sets the plan, and the run goes on as a resume of itself.

The training step is pure Keras, so it runs on the TensorFlow and JAX backends; TensorFlow serves
the input pipeline only. The exports and the model card come after training, in the job
(``trainer_service.jobs.training``). Each module reads the section of the run's configuration it
uses (``runs.config``); this one the network, the optimization and the augmentation.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from datavolume.datasets import ReadyDataset
from datavolume.files import atomic_write_json
from datavolume.layout import DataRoot, OutsideRoot
from datavolume.runs import RunFolder
from jobkit.context import LocalContext
from jobkit.errors import JobFailed, is_out_of_memory, summary_line
from trainer_service.engine.callbacks import RunRecorder, StopOnRequest, optimizer_step
from trainer_service.engine.data import (
    describe_corrupt_data,
    input_pipelines,
    is_data_error,
    load_dataset,
)
from trainer_service.engine.evaluate import evaluate_checkpoint, loss, metrics
from trainer_service.engine.objective import TrainingModel
from trainer_service.engine.runtime import Runtime, resolve_runtime
from trainer_service.engine.stopping import (
    PRUNED,
    StoppingRules,
    TrialGate,
    plan_epochs,
    read_plan,
)
from trainer_service.model.augment import Augment
from trainer_service.model.preprocess import Preprocess
from trainer_service.model.resnet import build_resnet
from trainer_service.model.saved import inference_copy, load_model
from trainer_service.model.schedule import EpochSchedule
from trainer_service.runs import checkpoints, resume, trial
from trainer_service.runs.checkpoints import atomic_save_model
from trainer_service.runs.config import Optimization, TrainConfig
from trainer_service.runs.dataset import pinned_folder, record_dataset
from trainer_service.runs.history import read_history


@dataclass
class TrainResult:
    """What :func:`train` did (the job records it as the run's result, with the exports)."""

    run_dir: str  #: relative to the data root
    dataset: str
    steps_per_epoch: int
    runtime: dict[str, Any]  #: ``Runtime.describe()``
    resumed_from: dict[str, Any] | None = None  #: epoch, file, partial, step, weights_sha256
    init: dict[str, Any] | None = None  #: the warm start: init_checkpoint, weights_sha256
    stopped_early: str | None = None  #: the rule that ended it (``engine.stopping``)
    budget: dict[str, Any] | None = None  #: the time budget's plan
    epochs_completed: int = 0
    history: list[dict[str, Any]] | None = None  #: the last history row
    best: dict[str, Any] | None = None  #: best.json
    stopped: bool = False  #: a stop request ended it (a resume finishes the run)
    pruned: bool = False  #: its sweep pruned it (``stopped_early`` says so too): it ends here
    model: str | None = None  #: the final model's file
    evaluation: dict[str, Any] | None = None  #: evaluation.json
    predictions: str | None = None  #: the test predictions' file

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def train(
    config: TrainConfig, run_dir: Path, data_root: Path, ctx=None, *, strategy=None
) -> TrainResult:
    """Train (or resume, if ``run_dir`` has a checkpoint) and say what was done.

    ``ctx``: the job context (progress, metrics, stop flag, log); a ``LocalContext`` if None.
    ``strategy``: a ``tf.distribute`` strategy instead of the default (tests). A stop during
    the set-up raises ``JobCancelled`` at once (nothing to save yet); a stop during training
    saves a checkpoint and returns early with ``stopped`` set. Raises ``JobFailed`` for unusable
    input and for out-of-memory (``type="out_of_memory"``).
    """
    ctx = ctx or LocalContext(logging.getLogger("trainer_service.engine"))
    root, run = DataRoot(data_root), RunFolder(Path(run_dir))
    with ctx.interruptible():
        run.make()
        run.remove_temporaries()  # left by a worker killed mid-write
        atomic_write_json(run.config, config.model_dump(mode="json"))
        pinned = pinned_folder(run)  # a resumed run reads the version it began with
        folder, metadata = load_dataset(root, config.dataset, pinned)
        if pinned is None:
            record_dataset(run, root, ReadyDataset(folder, metadata))
        plan = read_plan(run) if config.time_budget_min else None
        if plan is not None:  # decided after this run's first epoch
            config = plan.apply(config)
        try:
            start = resume.start_point(run)  # None: a new run
        except resume.CannotResume as exc:
            raise JobFailed(f"cannot resume: {exc}", "invalid_input") from None
        initial_epoch = start.epoch if start else 0
        runtime = resolve_runtime(config.compute, strategy)
        ctx.log.info("runtime: %s", runtime.describe())
        keras.utils.set_random_seed(config.seed)
        # A resumed run shuffles differently from the epochs it already did.
        train_ds, steps, val_ds = input_pipelines(
            config.pipeline, folder, metadata, config.seed + initial_epoch
        )
    result = TrainResult(
        run_dir=root.relative(run.root),
        dataset=config.dataset,
        steps_per_epoch=steps,
        runtime=runtime.describe(),
        budget=asdict(plan) if plan else None,
    )
    try:
        with ctx.interruptible(), runtime.scope():
            model = build_model(config, metadata.num_classes)  # what is saved and exported
            trained = compile_model(model, config, runtime, steps)  # what fit trains
            if start is not None:
                result.resumed_from = restore(model, start, steps)
                ctx.log.info("resumed from %s", result.resumed_from)
            elif config.init_checkpoint:
                result.init = warm_start(model, root, config.init_checkpoint)
                ctx.log.info("weights from %s", config.init_checkpoint)
        ctx.log.info(
            "model: %d parameters; %d train steps of %d per epoch; epochs %d..%d",
            model.count_params(),
            steps,
            config.batch_size,
            initial_epoch + 1,
            config.epochs,
        )
        if initial_epoch < config.epochs:
            # With a time budget and no plan yet, one epoch first: its pace sets the epochs.
            measuring = bool(config.time_budget_min) and plan is None
            end = initial_epoch + 1 if measuring else config.epochs
            started = time.monotonic()
            data = (train_ds, val_ds, steps)
            result.stopped_early = fit_epochs(trained, model, config, run, ctx, data, end)
            if measuring and not (ctx.should_stop or result.stopped_early):
                plan = plan_epochs(run, config.stopping, time.monotonic() - started)
                ctx.log.info("time budget: %s", asdict(plan))
                ctx.metrics({"epochs": plan.epochs})
                # The rest is a resume of this run, on a schedule that spans the plan.
                return train(config, run_dir, data_root, ctx, strategy=strategy)
        done = checkpoints.read_latest(run)
        result.best = best = checkpoints.read_best(run)
        result.epochs_completed = done.epoch if done else 0
        result.history = read_history(run)[-1:] or None
        if ctx.should_stop:  # a resume finishes the run
            result.stopped = True
            return result
        if result.stopped_early == PRUNED:  # its sweep has what it needs: no final model
            ctx.log.info("pruned by its sweep after %d epochs", result.epochs_completed)
            result.pruned = True
            return result
        if result.stopped_early:
            ctx.log.info("stopped early (%s) after %d epochs", result.stopped_early,
                         result.epochs_completed)  # fmt: skip

        ctx.phase("evaluate")
        use_averaged_weights(model, config.optimization)
        atomic_save_model(inference_copy(model), run.model)
        result.model = run.model.name
        if best is not None:  # else no epoch completed (a time limit in the first): as it is
            with runtime.scope():
                model.load_weights(run.best)
                use_averaged_weights(model, config.optimization)
        scored = {"checkpoint": run.best.name, "epoch": best["epoch"]} if best else {
            "checkpoint": run.model.name, "epoch": None}  # fmt: skip
        result.evaluation = evaluate_checkpoint(
            model, folder, metadata, run.root, config.evaluation, checkpoint=scored
        )
        result.predictions = run.predictions.name
        return result
    except Exception as exc:
        run.remove_temporaries()  # the checkpoints stay: a resume continues from them
        if isinstance(exc, JobFailed):
            raise
        if is_data_error(exc):
            raise JobFailed(
                describe_corrupt_data(folder, metadata, config.dataset), "data_error"
            ) from exc
        if not is_out_of_memory(exc):
            raise
        raise JobFailed(
            f"out of memory on {runtime.device} (batch_size {config.batch_size}, "
            f"width {config.width}, {runtime.dtype_policy}): {summary_line(str(exc))}; "
            "try a smaller batch_size or width",
            "out_of_memory",
        ) from exc


def fit_epochs(trained, model, config: TrainConfig, run: RunFolder, ctx, data, epochs: int):
    """``fit`` from the run's latest checkpoint to ``epochs`` with the run's callbacks; returns
    the stopping rule that ended it early, if one did (:mod:`.stopping`)."""
    train_ds, val_ds, steps = data
    done = checkpoints.read_latest(run)
    rules = StoppingRules(config.stopping, read_history(run), steps)
    link = trial.read_link(run)
    gate = TrialGate(run, link, steps, lambda: ctx.should_stop) if link else None
    callbacks = [
        StopOnRequest(lambda: ctx.should_stop, steps),
        RunRecorder(
            run,
            ctx,
            config.recording,
            steps_per_epoch=steps,
            network=model,
            hparams=config.hparams(),
        ),
        rules,
        *([gate] if gate else []),
    ]
    if config.use_ema:  # validation on the averaged weights; checkpoints keep both
        callbacks.insert(0, keras.callbacks.SwapEMAWeights())
    trained.fit(
        train_ds,
        validation_data=val_ds,
        epochs=epochs,
        initial_epoch=done.epoch if done else 0,
        callbacks=callbacks,
        shuffle=False,  # the pipeline shuffles
        verbose=0,
    )
    return rules.reason or (gate.reason if gate else None)


# -- the model -------------------------------------------------------------------------------


#: Variables the decoupled weight decay leaves alone unless ``decay_norm_and_bias``: BatchNorm's
#: scale and offset, and biases (Keras matches these against the variables' names).
NO_DECAY_NAMES = ("gamma", "beta", "bias")


def build_model(config: TrainConfig, classes: int) -> keras.Model:
    """The ResNet of the run's network section with its L2 weight decay, taking uint8 images:
    standardization and the flip (``Preprocess``), then the training-only crops its
    augmentation section asks for (``Augment``)."""
    network, augmentation = config.network, config.augmentation
    preprocessing = [Preprocess(flip=augmentation.flip, seed=augmentation.seed, name="preprocess")]
    if augmentation.crops:
        preprocessing.append(
            Augment(
                augmentation.crop_padding,
                augmentation.resized_crop_scale,
                augmentation.resized_crop_ratio,
                seed=augmentation.seed,
                name="augment",
            )
        )
    return build_resnet(
        classes,
        network.filters,
        network.levels,
        weight_decay=network.weight_decay,
        zero_init_residual=network.zero_init_residual,
        preprocessing=preprocessing,
        input_dtype="uint8",
    )


def schedule_for(optimization: Optimization, steps_per_epoch: int) -> EpochSchedule:
    """The learning-rate schedule of the run's optimization section."""
    return EpochSchedule(
        base_lr=optimization.learning_rate,
        steps_per_epoch=steps_per_epoch,
        kind=optimization.schedule,
        decay_epochs=optimization.decay_epochs,
        decay_factor=optimization.decay_factor,
        warmup_epochs=optimization.warmup_epochs,
        total_epochs=optimization.epochs,
        warmup_steps=optimization.warmup_steps,
    )


def make_optimizer(optimization: Optimization, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """SGD (momentum, Nesterov) or Adam on the run's schedule, with its decoupled weight decay
    and weight averaging when asked."""
    options: dict[str, Any] = {"learning_rate": schedule_for(optimization, steps_per_epoch)}
    if optimization.decoupled_weight_decay:
        options["weight_decay"] = optimization.decoupled_weight_decay
    if optimization.use_ema:
        options.update(use_ema=True, ema_momentum=optimization.ema_momentum)
    if optimization.optimizer == "adam":
        optimizer = keras.optimizers.Adam(**options)
    else:
        optimizer = keras.optimizers.SGD(
            momentum=optimization.momentum, nesterov=optimization.nesterov, **options
        )
    if optimization.decoupled_weight_decay and not optimization.decay_norm_and_bias:
        optimizer.exclude_from_weight_decay(var_names=list(NO_DECAY_NAMES))
    return optimizer


def compile_model(
    model: keras.Model, config: TrainConfig, runtime: Runtime, steps_per_epoch: int
) -> keras.Model:
    """Compile ``model`` with :func:`make_optimizer` and the loss and metrics of
    :mod:`.evaluate`; return what ``fit`` trains: ``model`` itself, or, when the run mixes
    images, smooths labels or flip-averages validation, a :class:`.objective.TrainingModel`
    around it sharing its optimizer (so ``model``'s checkpoints hold the optimizer's state)."""
    augmentation, tta_flip = config.augmentation, config.evaluation.tta_flip
    optimizer = make_optimizer(config.optimization, steps_per_epoch)
    compiled = {
        "jit_compile": runtime.jit_compile,
        "steps_per_execution": runtime.steps_per_execution,
    }
    model.compile(optimizer=optimizer, loss=loss(), metrics=metrics(), **compiled)
    if not (augmentation.mixing or augmentation.label_smoothing or tta_flip):
        return model
    trained = TrainingModel(
        model,
        mixup_alpha=augmentation.mixup_alpha,
        cutmix_alpha=augmentation.cutmix_alpha,
        cutmix_prob=augmentation.cutmix_prob,
        label_smoothing=augmentation.label_smoothing,
        tta_flip=tta_flip,
        seed=augmentation.seed,
        name="training",
    )
    trained.compile(optimizer=optimizer, metrics=metrics(), **compiled)
    return trained


def use_averaged_weights(model: keras.Model, optimization: Optimization) -> None:
    """With ``use_ema``: put the optimizer's moving averages into ``model``'s weights (what
    the final model and the evaluation use)."""
    if optimization.use_ema:
        model.optimizer.finalize_variable_values(model.trainable_variables)


def weights_digest(model: keras.Model) -> str:
    """SHA-256 of all weights (trainable and not) in order: equal digests, equal weights."""
    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight)).tobytes())
    return digest.hexdigest()


# -- where the weights start -----------------------------------------------------------------


def restore(model: keras.Model, start: resume.StartPoint, steps_per_epoch: int) -> dict[str, Any]:
    """Step 3 of :mod:`trainer_service.runs.resume`: load the start point's weights and
    optimizer state (``iterations`` included) into the freshly built, compiled ``model``."""
    model.optimizer.build(model.trainable_variables)
    if start.weights is not None:
        model.load_weights(start.weights)
    if start.steps_per_epoch not in (None, steps_per_epoch):
        logging.getLogger(__name__).warning(
            "steps per epoch changed from %s to %s since the checkpoint (dataset re-prepared?)",
            start.steps_per_epoch,
            steps_per_epoch,
        )
    return {
        "epoch": start.epoch,
        "file": start.weights.name if start.weights is not None else None,
        "partial": start.partial,
        "step": optimizer_step(model),
        "weights_sha256": weights_digest(model),
    }


def warm_start(model: keras.Model, root: DataRoot, relative: str) -> dict[str, Any]:
    """Copy the weights of the ``init_checkpoint`` (a .keras file under the data root)."""
    try:
        path = root.resolve(relative)
    except OutsideRoot:
        path = None
    if path is None or not path.is_file():
        raise JobFailed(
            f"init_checkpoint {relative!r}: no such file in the data root", "invalid_input"
        )
    try:
        source = load_model(path, compile=False)
        model.set_weights(source.get_weights())
    except (ValueError, OSError) as exc:
        raise JobFailed(
            f"init_checkpoint {relative!r} does not fit this model: {exc}", "invalid_input"
        ) from exc
    return {"init_checkpoint": relative, "weights_sha256": weights_digest(model)}
