import pytest

from dataset_service.errors import BadImage, ShardCountError
from dataset_service.layout import validate
from dataset_service.prepare import split_items
from dataset_service.reorganize import locate_val, reorganize
from dataset_service.tree import TreeRef, ZipTree, open_zip_tree
from dataset_service.writer import (
    STATE_DIR,
    Item,
    plan_split,
    shard_count_for,
    shuffled,
    write_shards,
)
from tests.dataset.support import SMALL_SPEC, read_split, shard_hashes


def _items(n, classes=4):
    # rel, label, wnid, file name, size, stamp
    return [Item(f"f{i:03d}", i % classes, f"n{i % classes:08d}", f"f{i}", 10, 0) for i in range(n)]


def _plan(tree, shards=None, seed=0, skip_bad=False):
    """Tasks for a folder (reorganized first) or a :class:`ZipTree` (read in place)."""
    layout = validate(tree)
    val_at = None
    if isinstance(layout.tree, ZipTree):
        val_at = locate_val(layout)
    else:
        reorganize(layout)
    tasks = []
    for split, items in split_items(layout, val_at).items():
        count = (shards or {}).get(split, 3 if split == "train" else 1)
        tasks += plan_split(
            "t",
            split,
            items,
            source=layout.tree.ref,
            label=layout.tree.label,
            num_shards=count,
            seed=seed,
            skip_bad=skip_bad,
        )
    return tasks


@pytest.mark.parametrize(
    ("num_bytes", "target", "items", "expected"),
    [(0, 100, 5, 1), (100, 100, 5, 1), (101, 100, 5, 2), (10_000, 100, 5, 5), (250, 100, 9, 3)],
)
def test_shard_count_from_size(num_bytes, target, items, expected):
    assert shard_count_for(num_bytes, target, items) == expected


def test_plan_covers_every_item_once_in_near_equal_mixed_shards():
    items = _items(80)
    tasks = plan_split(
        "t",
        "train",
        items,
        source=TreeRef("dir", "/r"),
        label="r",
        num_shards=3,
        seed=0,
        skip_bad=False,
    )
    assert [t.file_name for t in tasks] == [f"t-train.tfrecord-0000{i}-of-00003" for i in range(3)]
    assert sorted(i.rel for t in tasks for i in t.items) == sorted(i.rel for i in items)
    assert [len(t.items) for t in tasks] == [26, 27, 27]
    assert all(len({i.label for i in t.items}) == 4 for t in tasks)  # classes mixed


def test_shuffle_is_fixed_by_the_seed_not_by_input_order():
    items = _items(50)
    assert shuffled(items, "train", 0) == shuffled(list(reversed(items)), "train", 0)
    assert shuffled(items, "train", 0) != shuffled(items, "train", 1)
    assert shuffled(items, "train", 0) != shuffled(items, "val", 0)
    assert shuffled(items, "train", 0) != sorted(items, key=lambda i: i.rel)


def test_more_shards_than_images_is_refused():
    with pytest.raises(ShardCountError, match=r"shards\.val=6 is more than the 5 images"):
        plan_split(
            "t",
            "val",
            _items(5),
            source=TreeRef("dir", "/r"),
            label="r",
            num_shards=6,
            seed=0,
            skip_bad=False,
        )


def test_write_in_process_round_trips(tree, tmp_path):
    tasks = _plan(tree)
    out = tmp_path / "out"
    seen = []
    results = write_shards(tasks, out, "t", processes=1, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (SMALL_SPEC.total_images, SMALL_SPEC.total_images)
    assert [r.file_name for r in results] == [t.file_name for t in tasks]
    for task, result in zip(tasks, results, strict=True):
        records = read_split(out, [out / result.file_name])
        assert result.num_records == len(records) == len(task.items)
        assert [r["file_name"] for r in records] == [i.file_name for i in task.items]
        assert [r["label"] for r in records] == [i.label for i in task.items]
        assert result.num_bytes == (out / result.file_name).stat().st_size
        assert (out / STATE_DIR / f"{result.file_name}.json").is_file()
    assert sum(len(r.re_encoded) for r in results) >= 3  # grayscale, CMYK and PNG sources
    assert not [p for p in out.iterdir() if ".tmp-" in p.name]


def test_same_input_and_seed_give_identical_bytes(tree, tmp_path):
    tasks = _plan(tree)
    write_shards(tasks, tmp_path / "a", "t", processes=1)
    write_shards(tasks, tmp_path / "b", "t", processes=1)
    assert shard_hashes(tmp_path / "a") == shard_hashes(tmp_path / "b")


def test_resume_keeps_verified_shards_and_rewrites_the_rest(tree, tmp_path):
    tasks = _plan(tree)
    out = tmp_path / "out"
    write_shards(tasks, out, "t", processes=1)
    reference = shard_hashes(out)
    train = [t.file_name for t in tasks if t.split == "train"]
    corrupt, unrecorded, kept = train
    with open(out / corrupt, "ab") as f:
        f.write(b"junk")
    (out / STATE_DIR / f"{unrecorded}.json").unlink()
    (out / f"{kept}.tmp-999").write_bytes(b"partial")  # a crashed writer's temp file
    (out / "t-train.tfrecord-00000-of-00009").write_bytes(b"from another plan")
    inode = (out / kept).stat().st_ino

    results = {r.file_name: r for r in write_shards(tasks, out, "t", processes=1)}
    assert results[kept].reused and (out / kept).stat().st_ino == inode
    assert not results[corrupt].reused and not results[unrecorded].reused
    assert shard_hashes(out) == reference
    assert not [p for p in out.iterdir() if ".tmp-" in p.name or "of-00009" in p.name]


def test_a_different_plan_rewrites(tree, tmp_path):
    out = tmp_path / "out"
    write_shards(_plan(tree, seed=0), out, "t", processes=1)
    results = write_shards(_plan(tree, seed=1), out, "t", processes=1)
    assert not any(r.reused for r in results)


def test_bad_image_fails_with_its_path_or_is_skipped(tree, tmp_path):
    victim = next((tree / "train").glob("*/images/*_3.JPEG"))
    victim.write_bytes(victim.read_bytes()[:300])
    rel = str(victim.relative_to(tree))
    with pytest.raises(BadImage, match=rel):
        write_shards(_plan(tree), tmp_path / "a", "t", processes=1)
    assert not [p for p in (tmp_path / "a").iterdir() if ".tmp-" in p.name]

    results = write_shards(_plan(tree, skip_bad=True), tmp_path / "b", "t", processes=1)
    skipped = [s for r in results for s in r.skipped]
    assert len(skipped) == 1 and skipped[0].startswith(f"{rel}: cannot decode")
    assert sum(r.num_records for r in results) == SMALL_SPEC.total_images - 1


def test_process_pool_writes_the_same_bytes(tree, tmp_path):
    """Shards written by 2 spawned worker processes equal those written in-process."""
    tasks = _plan(tree, shards={"train": 4, "val": 2, "test": 2})
    write_shards(tasks, tmp_path / "serial", "t", processes=1)
    seen = []
    results = write_shards(
        tasks,
        tmp_path / "pool",
        "t",
        processes=2,
        progress=lambda d, t: seen.append((d, t)),
    )
    assert shard_hashes(tmp_path / "pool") == shard_hashes(tmp_path / "serial")
    assert seen[-1] == (SMALL_SPEC.total_images, SMALL_SPEC.total_images)
    assert len(results) == 8 and not any(r.reused for r in results)


def test_stop_kills_the_pool_and_leaves_no_partial_shard(tree, tmp_path):
    tasks = _plan(tree, shards={"train": 6, "val": 2, "test": 2})
    out = tmp_path / "out"
    started = []

    def check_stop():
        if started:
            raise KeyboardInterrupt("stop")

    with pytest.raises(KeyboardInterrupt):
        write_shards(
            tasks,
            out,
            "t",
            processes=2,
            progress=lambda d, t: started.append(d) if d else None,
            check_stop=check_stop,
        )
    assert not [p for p in out.iterdir() if ".tmp-" in p.name]
    finals = [p.name for p in out.iterdir() if ".tfrecord-" in p.name]
    assert len(finals) < len(tasks)
    assert all((out / STATE_DIR / f"{name}.json").is_file() for name in finals)


def test_a_zip_read_in_place_gives_the_same_shards_as_its_extracted_tree(
    tree, pristine_zip, tmp_path
):
    zipped = open_zip_tree(pristine_zip, max_bytes=10**9, label="in.zip")
    from_zip = write_shards(_plan(zipped), tmp_path / "zip", "t", processes=2)
    from_tree = write_shards(_plan(tree), tmp_path / "tree", "t", processes=1)
    assert shard_hashes(tmp_path / "zip") == shard_hashes(tmp_path / "tree")
    assert [r.num_records for r in from_zip] == [r.num_records for r in from_tree]
    # Re-encoded files are named where they are in the source (val: not yet in class folders).
    val = [p for r in from_zip if r.split == "val" for p in r.re_encoded]
    assert val and all(p.startswith("val/images/") for p in val)


def test_an_unreadable_file_is_a_bad_image_naming_it(tree, tmp_path):
    tasks = _plan(tree)
    victim = tasks[0].items[0]
    (tree / victim.where).unlink()
    with pytest.raises(BadImage, match=f"{victim.where}: cannot read image"):
        write_shards(tasks, tmp_path / "out", "t", processes=1)


def test_a_task_survives_pickling_item_for_item(tree, pristine_zip):
    import pickle

    for source in (tree, open_zip_tree(pristine_zip, max_bytes=10**9, label="in.zip")):
        for task in _plan(source):
            copy = pickle.loads(pickle.dumps(task))
            assert copy == task and copy.key() == task.key()
            assert copy.items and all(type(i) is type(task.items[0]) for i in copy.items)
