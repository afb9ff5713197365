import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

from dataset_service.datasets import list_datasets
from dataset_service.errors import BadImage, LayoutError, ShardCountError
from dataset_service.models import PrepareRequest
from dataset_service.prepare import prepare, result_of, run_prepare
from dataset_service.settings import get_settings
from dataset_service.writer import STATE_DIR
from datavolume import DataRoot
from jobkit.context import LocalContext
from jobkit.errors import JobFailed
from shard_format.metadata import load_metadata
from shard_format.schema import METADATA_FILE
from tests.conftest import REPO_ROOT
from tests.dataset.support import (
    SMALL,
    SMALL_SPEC,
    assert_records_match_sources,
    is_ready,
    make_settings,
    metadata_without_time,
    read_dataset_records,
    shard_hashes,
    wait_for,
)

SYNTHETIC = {"kind": "synthetic", **SMALL}


def test_records_match_the_source_images_one_for_one(reference, pristine):
    root, metadata = reference
    assert_records_match_sources(read_dataset_records(root, metadata.name), pristine)


def test_metadata_describes_the_dataset(reference, pristine):
    root, metadata = reference
    assert load_metadata(DataRoot(root).dataset(metadata.name)) == metadata
    assert metadata.wnids() == (pristine / "wnids.txt").read_text().split()
    assert all(c.words for c in metadata.classes)
    assert {s: v.num_records for s, v in metadata.splits.items()} == {
        "train": SMALL_SPEC.train_total,
        "val": SMALL_SPEC.val_total,
        "test": SMALL_SPEC.test_images,
    }
    assert len(metadata.splits["train"].shards) > 1  # derived from size (20 kB target)
    assert metadata.splits["test"].labeled is False
    assert metadata.provenance.source_kind == "synthetic" and "classes=4" in (
        metadata.provenance.source
    )
    assert len(metadata.provenance.re_encoded) >= 3 and metadata.provenance.skipped == []
    result = result_of(metadata, DataRoot(root))
    assert result["path"] == "datasets/tiny-imagenet-200"
    assert result["splits"] == {"train": 80, "val": 20, "test": 10}
    assert result["re_encoded"] == len(metadata.provenance.re_encoded)


def test_given_shard_counts_are_used(data_root):
    request = PrepareRequest(name="s", source=SYNTHETIC, shards={"train": 3, "val": 2})
    metadata = prepare(request, make_settings(data_root))
    assert [len(metadata.splits[s].shards) for s in ("train", "val")] == [3, 2]
    assert [s.file_name for s in metadata.splits["val"].shards] == [
        "s-val.tfrecord-00000-of-00002",
        "s-val.tfrecord-00001-of-00002",
    ]


def test_rerun_reuses_every_shard_and_gives_the_same_dataset(reference, data_root):
    settings = make_settings(data_root)
    request = PrepareRequest(source=SYNTHETIC)
    prepare(request, settings)
    folder = DataRoot(data_root).dataset(request.name)
    first = metadata_without_time(folder)
    reporter = LocalContext()
    prepare(request, settings, reporter)
    assert reporter.latest_metrics["shards_reused"] == reporter.latest_metrics["shards_total"]
    assert "generate" not in reporter.phases
    assert metadata_without_time(folder) == first
    ref_root, ref = reference
    assert shard_hashes(folder) == shard_hashes(DataRoot(ref_root).dataset(ref.name))


def test_folder_source_gives_the_same_shards(reference, pristine, data_root):
    shutil.copytree(pristine, data_root / "mine" / pristine.name)
    metadata = prepare(
        PrepareRequest(source={"kind": "folder", "path": "mine"}), make_settings(data_root)
    )
    ref_root, ref = reference
    folder = DataRoot(data_root).dataset(metadata.name)
    assert shard_hashes(folder) == shard_hashes(DataRoot(ref_root).dataset(ref.name))
    assert (data_root / "mine" / pristine.name / "val" / ref.wnids()[0] / "images").is_dir()


def _truncate_one_train_image(data_root, pristine):
    tree = data_root / "mine" / pristine.name
    shutil.copytree(pristine, tree)
    victim = sorted((tree / "train").glob("*/images/*_5.JPEG"))[0]
    victim.write_bytes(victim.read_bytes()[:200])
    return str(victim.relative_to(tree))


def test_truncated_image_fails_with_its_path_and_leaves_nothing_ready(pristine, data_root):
    rel = _truncate_one_train_image(data_root, pristine)
    request = PrepareRequest(name="bad", source={"kind": "folder", "path": "mine"})
    with pytest.raises(BadImage, match=rel):
        prepare(request, make_settings(data_root))
    assert not is_ready(data_root, "bad")
    assert not (DataRoot(data_root).dataset("bad") / "dataset_info.json").exists()


def test_skip_bad_images_leaves_them_out_and_reports_them(pristine, data_root):
    rel = _truncate_one_train_image(data_root, pristine)
    request = PrepareRequest(
        name="skip", source={"kind": "folder", "path": "mine"}, skip_bad_images=True
    )
    metadata = prepare(request, make_settings(data_root))
    assert metadata.splits["train"].num_records == SMALL_SPEC.train_total - 1
    assert len(metadata.provenance.skipped) == 1
    assert metadata.provenance.skipped[0].startswith(f"{rel}: cannot decode image")
    assert result_of(metadata, DataRoot(data_root))["skipped"] == metadata.provenance.skipped
    assert is_ready(data_root, "skip")


def test_a_failed_re_prepare_leaves_the_good_dataset_as_it_was(data_root):
    settings = make_settings(data_root)
    good = prepare(PrepareRequest(name="d", source=SYNTHETIC), settings)
    folder = DataRoot(data_root).dataset("d")
    before = shard_hashes(folder)
    reader_sees = folder.resolve()  # where a run that started now reads (the trainer resolves)
    # Fails before writing (bad input): the existing, complete dataset stays ready.
    with pytest.raises(ShardCountError):
        prepare(PrepareRequest(name="d", source=SYNTHETIC, shards={"test": 11}), settings)
    assert is_ready(data_root, "d")
    # Fails while writing: still the old dataset, every shard intact, still listed.
    tree = data_root / "raw" / "extracted" / "d" / "tiny-imagenet-200"
    victim = sorted((tree / "test" / "images").iterdir())[0]
    original = victim.read_bytes()
    victim.write_bytes(b"garbage")
    with pytest.raises(BadImage):
        prepare(PrepareRequest(name="d", source=SYNTHETIC, shards={"test": 2}), settings)
    assert is_ready(data_root, "d")
    assert load_metadata(folder) == good and shard_hashes(folder) == before
    assert not DataRoot(data_root).staging("d").exists()  # no half-written version left
    assert [d.name for d in list_datasets(DataRoot(data_root))] == ["d"]
    # Fixed, a new version is published; a reader of the old one still finds all its files.
    victim.write_bytes(original)
    new = prepare(PrepareRequest(name="d", source=SYNTHETIC, shards={"test": 2}), settings)
    assert load_metadata(folder) == new and len(new.splits["test"].shards) == 2
    assert folder.resolve() != reader_sees
    assert load_metadata(reader_sees) == good and shard_hashes(reader_sees) == before


def test_too_many_shards_fail_in_the_plan_phase(data_root):
    reporter = LocalContext()
    with pytest.raises(ShardCountError):
        prepare(
            PrepareRequest(name="p", source=SYNTHETIC, shards={"train": 1000}),
            make_settings(data_root),
            reporter,
        )
    assert reporter.phases[-1] == "plan"


def test_layout_errors_fail_before_anything_is_written(pristine, data_root):
    tree = data_root / "mine" / pristine.name
    shutil.copytree(pristine, tree)
    with open(tree / "val" / "val_annotations.txt", "a") as f:
        f.write("val_3.JPEG\tn00000000\t0\t0\t9\t9\n")
    with pytest.raises(LayoutError, match=r"line 21: wnid 'n00000000' is not in wnids\.txt"):
        prepare(
            PrepareRequest(name="l", source={"kind": "folder", "path": "mine"}),
            make_settings(data_root),
        )
    assert not DataRoot(data_root).dataset("l").exists()


_SLOW_PREPARE = """
import sys, time
from pathlib import Path
import dataset_service.writer as writer
real = writer.serialize  # called once per record
def slow(*args):
    time.sleep(0.03)
    return real(*args)
writer.serialize = slow
from dataset_service.models import PrepareRequest
from dataset_service.prepare import prepare
from tests.dataset.support import SMALL, make_settings
prepare(PrepareRequest(source={"kind": "synthetic", **SMALL}), make_settings(Path(sys.argv[1])))
"""


def _finals(folder):
    return sorted(
        p.name for p in folder.iterdir() if ".tfrecord-" in p.name and ".tmp-" not in p.name
    )


def _recorded(folder):
    """Final shards whose sidecar is written: complete as far as a resume can tell."""
    if not folder.is_dir():
        return []
    return [n for n in _finals(folder) if (folder / STATE_DIR / f"{n}.json").exists()]


def test_killed_mid_write_then_rerun_keeps_complete_shards_and_equals_an_uninterrupted_run(
    reference, data_root
):
    folder = DataRoot(data_root).dataset("tiny-imagenet-200")
    staging = DataRoot(data_root).staging("tiny-imagenet-200")  # where a prepare writes until done
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen(
        [sys.executable, "-c", _SLOW_PREPARE, str(data_root)],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: len(_recorded(staging)) >= 3, timeout_s=120)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    ref_root, ref = reference
    ref_folder = DataRoot(ref_root).dataset(ref.name)
    total = len(shard_hashes(ref_folder))
    complete = _recorded(staging)
    assert 3 <= len(complete) < total  # really killed mid-write
    assert not (staging / METADATA_FILE).exists() and not folder.exists()
    inodes = {n: (staging / n).stat().st_ino for n in complete}

    reporter = LocalContext()
    prepare(PrepareRequest(source=SYNTHETIC), make_settings(data_root), reporter)
    assert reporter.latest_metrics["shards_reused"] >= len(complete)
    assert {n: (folder / n).stat().st_ino for n in complete} == inodes  # kept, not rewritten
    assert not staging.exists()
    assert shard_hashes(folder) == shard_hashes(ref_folder)
    assert metadata_without_time(folder) == metadata_without_time(ref_folder)
    assert not [p for p in folder.iterdir() if ".tmp-" in p.name]


class _Ctx(LocalContext):
    def __init__(self, request):
        super().__init__()
        self.request = request
        self.results = []

    def result(self, values):
        self.results.append(values)


@pytest.fixture
def env_settings(data_root, monkeypatch):
    for key, value in {
        "DATASET_DATA_ROOT": str(data_root),
        "DATASET_WRITER_PROCESSES": "1",
    }.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_job_function_records_the_result(env_settings, data_root):
    ctx = _Ctx(PrepareRequest(name="j", source=SYNTHETIC).model_dump(mode="json"))
    run_prepare(ctx)
    (result,) = ctx.results
    assert result["dataset"] == "j" and result["splits"]["val"] == SMALL_SPEC.val_total
    assert ctx.phases == ["generate", "validate", "reorganize", "plan", "write", "metadata"]
    assert json.loads((DataRoot(data_root).dataset("j") / METADATA_FILE).read_text())["name"] == "j"


def test_job_function_fails_readably_on_bad_input(env_settings, data_root):
    (data_root / "empty").mkdir()
    ctx = _Ctx({"name": "x", "source": {"kind": "folder", "path": "empty"}})
    with pytest.raises(JobFailed, match=r"wnids\.txt is missing") as info:
        run_prepare(ctx)
    assert info.value.type == "invalid_input"


def _zip_source(pristine_zip, data_root, rel="in/tiny.zip"):
    target = data_root / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    os.link(pristine_zip, target)
    return {"kind": "zip", "path": rel}


def test_a_zip_is_read_in_place_into_the_same_shards(reference, pristine_zip, data_root):
    reporter = LocalContext()
    settings = make_settings(data_root)
    metadata = prepare(
        PrepareRequest(source=_zip_source(pristine_zip, data_root)), settings, reporter
    )
    assert reporter.phases == ["inspect", "validate", "reorganize", "plan", "write", "metadata"]
    assert not (data_root / "raw").exists()  # nothing extracted
    ref_root, ref = reference
    folder = DataRoot(data_root).dataset(metadata.name)
    assert shard_hashes(folder) == shard_hashes(DataRoot(ref_root).dataset(ref.name))
    assert metadata.provenance.image_folder is None
    assert result_of(metadata, settings.volume)["image_folder"] is None
    assert metadata.provenance.source == "in/tiny.zip" and metadata.provenance.md5


def test_an_image_folder_is_made_once_per_archive_on_request(reference, pristine_zip, data_root):
    settings = make_settings(data_root)
    source = _zip_source(pristine_zip, data_root)
    first = prepare(PrepareRequest(name="a", source=source, image_folder=True), settings)
    folder = first.provenance.image_folder
    assert folder == f"raw/extracted/archive-{first.provenance.md5}/tiny-imagenet-200"
    tree = data_root / folder
    assert {p.name for p in (tree / "val").iterdir()} == {*first.wnids(), "val_annotations.txt"}
    assert len(list((tree / "val").glob("n*/images/*.JPEG"))) == SMALL_SPEC.val_total
    reporter = LocalContext()
    second = prepare(PrepareRequest(name="b", source=source, image_folder=True), settings, reporter)
    assert "extract" not in reporter.phases and second.provenance.image_folder == folder
    assert len(list((data_root / "raw" / "extracted").iterdir())) == 1
    ref_root, ref = reference
    for name in ("a", "b"):
        hashes = shard_hashes(DataRoot(data_root).dataset(name))
        assert list(hashes.values()) == list(
            shard_hashes(DataRoot(ref_root).dataset(ref.name)).values()
        )


def test_a_truncated_image_in_a_zip_fails_naming_it_in_the_archive(pristine, data_root, tmp_path):
    from dataset_service.synthetic import pack_zip

    rel = _truncate_one_train_image(data_root, pristine)
    archive = pack_zip(data_root / "mine" / pristine.name, tmp_path / "cut.zip")
    with pytest.raises(BadImage, match=f"^{rel}: cannot decode image"):
        prepare(
            PrepareRequest(name="z", source=_zip_source(archive, data_root)),
            make_settings(data_root),
        )
    assert not is_ready(data_root, "z")


def test_a_prepare_failing_for_space_removes_its_partial_version(data_root, monkeypatch):
    import errno

    import dataset_service.prepare as prepare_module

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(prepare_module, "write_tfds_metadata", full)  # after every shard
    with pytest.raises(OSError, match="No space left"):
        prepare(PrepareRequest(name="full", source=SYNTHETIC), make_settings(data_root))
    assert not DataRoot(data_root).staging("full").exists()
    assert not DataRoot(data_root).dataset("full").exists()
