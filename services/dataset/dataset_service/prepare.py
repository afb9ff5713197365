"""The prepare pipeline: source -> validate -> reorganize -> write shards -> metadata.

:func:`prepare` is a plain function (scripts, tests); :func:`run_prepare` is the job function
the jobkit worker process calls with its ``JobContext``. Phases, in order: ``download`` (url),
``inspect`` (url, zip: checksum and central directory; the archive is then read in place),
``extract`` (url, zip, only with ``image_folder``), ``generate`` (synthetic), then ``validate``,
``reorganize`` (a tree on disk: val images moved into class folders; an archive read in place:
val labels matched, nothing moves), ``plan``, ``write`` and ``metadata``.

A prepare writes a new version of the dataset in its staging folder and publishes it only when
complete (``datavolume.datasets``): readers keep the current version until the swap, and a prepare
that fails or is cancelled leaves it exactly as it was. A failed prepare also removes its staging
folder; a cancelled (or killed) one keeps it, and the same request posted again resumes from
it. In the staging folder, the metadata that marks a dataset complete is deleted before the
first shard is written and written again last (TFDS first, ``shard_format.json`` last,
atomically).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from dataset_service.errors import PrepareError
from dataset_service.gcpause import paused_gc
from dataset_service.layout import Layout, validate
from dataset_service.layout_names import IMAGES_DIR, TEST_DIR, TRAIN_DIR
from dataset_service.models import PrepareRequest
from dataset_service.reorganize import locate_val, reorganize, sorted_val_rel
from dataset_service.settings import Settings, get_settings
from dataset_service.source import obtain_tree
from dataset_service.tfds_meta import (
    import_tfds,
    remove_tfds_metadata,
    write_tfds_metadata,
)
from dataset_service.tree import DiskTree, Tree
from dataset_service.writer import (
    Item,
    ShardResult,
    ShardTask,
    WriterPool,
    default_processes,
    plan_split,
    shard_count_for,
    write_shards,
)
from datavolume.datasets import open_staging, publish, write_metadata
from datavolume.layout import DataRoot
from jobkit.context import Context, LocalContext
from jobkit.errors import JobCancelled
from shard_format.metadata import (
    ClassInfo,
    DatasetMetadata,
    Provenance,
    ShardInfo,
    SplitInfo,
)
from shard_format.schema import (
    LABELED_SPLITS,
    METADATA_FILE,
    TEST,
    TRAIN,
    UNLABELED,
    VAL,
)

JOB_KIND = "prepare"


# ---------------------------------------------------------------------------- items


def split_items(layout: Layout, val_at: list[str] | None = None) -> dict[str, list[Item]]:
    """Every image of a tree, per split, with its label (test: UNLABELED). ``val_at`` says
    where each annotated val image is now (:func:`locate_val`; by default, reorganized)."""
    tree = layout.tree
    index = layout.class_index()

    def item(rel: str, label: int, wnid: str, file_name: str, src: str = "") -> Item:
        size, stamp, member = tree.info(src or rel)
        return Item(rel, label, wnid, file_name, size, stamp, src, member)

    train = [
        item(f"{TRAIN_DIR}/{wnid}/{IMAGES_DIR}/{f}", index[wnid], wnid, f)
        for wnid in layout.wnids
        for f in layout.train[wnid]
    ]
    sorted_val = [sorted_val_rel(a.wnid, a.file_name) for a in layout.val]
    val = [
        item(rel, index[a.wnid], a.wnid, a.file_name, "" if here == rel else here)
        for a, rel, here in zip(layout.val, sorted_val, val_at or sorted_val, strict=True)
    ]
    test = [item(f"{TEST_DIR}/{IMAGES_DIR}/{f}", UNLABELED, "", f) for f in layout.test]
    items = {TRAIN: train, VAL: val, TEST: test}
    return {split: found for split, found in items.items() if found}


def plan(
    request: PrepareRequest,
    layout: Layout,
    target_shard_bytes: int,
    val_at: list[str] | None = None,
) -> dict[str, list[ShardTask]]:
    """Shard tasks per split: given counts, or derived from the split's bytes."""
    planned: dict[str, list[ShardTask]] = {}
    given = request.shards or {}
    for split, items in split_items(layout, val_at).items():
        count = given.get(split) or shard_count_for(
            sum(i.size for i in items), target_shard_bytes, len(items)
        )
        planned[split] = plan_split(
            request.name,
            split,
            items,
            source=layout.tree.ref,
            label=layout.tree.label,
            num_shards=count,
            seed=request.shuffle_seed,
            skip_bad=request.skip_bad_images,
        )
    return planned


# ---------------------------------------------------------------------------- readiness


def unmark_ready(out: Path) -> None:
    """Delete the metadata that makes a dataset folder look complete."""
    (out / METADATA_FILE).unlink(missing_ok=True)
    remove_tfds_metadata(out)


# ---------------------------------------------------------------------------- metadata


def build_metadata(
    request: PrepareRequest,
    layout: Layout,
    results: dict[str, list[ShardResult]],
    provenance: dict[str, Any],
) -> DatasetMetadata:
    splits = {
        split: SplitInfo(
            name=split,
            labeled=split in LABELED_SPLITS,
            num_records=sum(r.num_records for r in shard_results),
            shards=[
                ShardInfo(
                    file_name=r.file_name,
                    num_records=r.num_records,
                    num_bytes=r.num_bytes,
                    sha256=r.sha256,
                )
                for r in shard_results
            ],
        )
        for split, shard_results in results.items()
    }
    every = [r for shard_results in results.values() for r in shard_results]
    return DatasetMetadata(
        name=request.name,
        classes=[
            ClassInfo(index=i, wnid=w, words=layout.words[w]) for i, w in enumerate(layout.wnids)
        ],
        splits=splits,
        provenance=Provenance(
            source_kind=request.source.kind,
            source=provenance["source"],
            md5=provenance["md5"],
            image_folder=provenance["image_folder"],
            shuffle_seed=request.shuffle_seed,
            re_encoded=sorted(p for r in every for p in r.re_encoded),
            skipped=sorted(p for r in every for p in r.skipped),
        ),
    )


# ---------------------------------------------------------------------------- pipeline


def prepare(
    request: PrepareRequest, settings: Settings, reporter: Context | None = None
) -> DatasetMetadata:
    """Run the whole pipeline for ``request`` and return the written metadata.

    Raises :class:`~dataset_service.errors.PrepareError` subclasses for bad input (messages
    name the file, line or path at fault). Re-running after a crash keeps verified shards.
    ``reporter`` takes the progress: the job's context, or a :class:`~jobkit.context.LocalContext`
    (the default) outside a job. One prepare per dataset name runs at a time: the job store's
    resource key sees to it.
    """
    rep = reporter or LocalContext(logging.getLogger(__name__))
    root = settings.volume
    # The writer processes start now: their start-up overlaps the checks and the plan.
    with WriterPool(default_processes(settings.writer_processes)) as pool:
        tree, provenance = obtain_tree(
            request.source,
            request.name,
            root,
            rep,
            settings.source_limits,
            image_folder=request.image_folder,
        )

        rep.phase("validate")
        layout = validate(tree)

        rep.phase("reorganize", total=len(layout.val), unit="images")
        val_at: list[str] | None = None
        if isinstance(tree, DiskTree):
            report = reorganize(layout, progress=rep.progress, check_stop=rep.check_stop)
            rep.log.info(
                "val images: %d moved, %d already in place", report.moved, report.already_in_place
            )
        else:  # read in place: the records carry the val labels, nothing moves
            val_at = locate_val(layout)
            rep.log.info("val images: %d labelled from the annotations", len(val_at))

        rep.phase("plan")  # shard counts are checked against the images here
        with paused_gc():
            tasks = plan(request, layout, settings.target_shard_bytes, val_at)
        # Built beside the current version, which stays usable until the swap at the end.
        out = open_staging(root, request.name)
        try:
            unmark_ready(out)

            every = [t for split_tasks in tasks.values() for t in split_tasks]
            rep.phase("write", total=sum(len(t.items) for t in every), unit="images")
            written = write_shards(
                every,
                out,
                request.name,
                pool=pool,
                progress=rep.progress,
                check_stop=rep.check_stop,
                meanwhile=import_tfds,  # needed by the metadata phase
            )
            by_file = {r.file_name: r for r in written}
            results = {split: [by_file[t.file_name] for t in ts] for split, ts in tasks.items()}
            rep.metrics(
                {
                    "shards_total": len(written),
                    "shards_reused": sum(r.reused for r in written),
                    "re_encoded": sum(len(r.re_encoded) for r in written),
                    "skipped": sum(len(r.skipped) for r in written),
                }
            )

            rep.phase("metadata")
            provenance["image_folder"] = _image_folder(tree, root)
            metadata = build_metadata(request, layout, results, provenance)
            write_tfds_metadata(out, metadata)
            write_metadata(out, metadata)  # its presence means "complete"
            publish(root, request.name, out)
        except JobCancelled:
            raise  # kept: the same request posted again resumes from its complete shards
        except Exception:
            # A failed prepare leaves no half-written version (its shards may be what filled
            # the volume); the published version is untouched, its files only linked.
            shutil.rmtree(out, ignore_errors=True)
            raise
        return metadata


def _image_folder(tree: Tree, root: DataRoot) -> str | None:
    """The reorganized ImageFolder tree of a prepare (relative to the data root), if any."""
    if not isinstance(tree, DiskTree):
        return None
    return root.relative(tree.root)


def result_of(metadata: DatasetMetadata, root: DataRoot) -> dict[str, Any]:
    """The job result: where the dataset is and what it holds."""
    return {
        "dataset": metadata.name,
        "path": root.relative(root.dataset(metadata.name)),
        "splits": {name: split.num_records for name, split in metadata.splits.items()},
        "num_classes": metadata.num_classes,
        "re_encoded": len(metadata.provenance.re_encoded),
        "skipped": metadata.provenance.skipped,
        "image_folder": metadata.provenance.image_folder,
    }


def run_prepare(ctx: Any) -> None:
    """Job function (``dataset_service.prepare:run_prepare``) run by the jobkit worker."""
    from jobkit.errors import JobFailed

    request = PrepareRequest.model_validate(ctx.request)
    settings = get_settings()
    try:
        metadata = prepare(request, settings, reporter=ctx)
    except PrepareError as exc:
        raise JobFailed(exc.message, type=exc.type) from exc
    result = result_of(metadata, settings.volume)
    ctx.log.info("dataset %s ready in %s: %s", result["dataset"], result["path"], result["splits"])
    ctx.result(result)
