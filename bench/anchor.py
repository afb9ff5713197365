"""The anchor the prepare job is measured against: the plainest fast way to the same shards.

``unzip -q`` the archive, read the val labels from ``val_annotations.txt``, shuffle each split's
file list with a fixed seed, and write 64/8/8 shards (train/val/test) with a 2-process spawn
pool, one ``tf.train.Example`` per image: the JPEG bytes passed through after a header-only
check of the component count, the rare non-RGB file re-encoded with PIL. It checks less than
the project (no full decode, no archive safety checks, no resume, no metadata) and is here to
say what the hardware allows, not to be used.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import random
import subprocess
import time
from pathlib import Path

SHARDS = {"train": 64, "val": 8, "test": 8}
SOF = {0xC0, 0xC1, 0xC2}  # baseline, extended, progressive


def _components(data: bytes) -> int:
    """The component count from the first SOF marker (0 when none is found)."""
    i = 2
    while i + 9 < len(data) and data[i] == 0xFF:
        marker, length = data[i + 1], int.from_bytes(data[i + 2 : i + 4], "big")
        if marker in SOF:
            return data[i + 9]
        i += 2 + length
    return 0


def _write(job: tuple[str, list[tuple[str, int, str]]]) -> int:
    import tensorflow as tf
    from PIL import Image

    path, items = job
    with tf.io.TFRecordWriter(path) as w:
        for file, label, wnid in items:
            data = Path(file).read_bytes()
            if not data.startswith(b"\xff\xd8") or _components(data) != 3:
                buf = io.BytesIO()
                Image.open(io.BytesIO(data)).convert("RGB").save(buf, "JPEG", quality=95)
                data = buf.getvalue()
            feature = {
                "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[data])),
                "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
                "wnid": tf.train.Feature(bytes_list=tf.train.BytesList(value=[wnid.encode()])),
                "file_name": tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[os.path.basename(file).encode()])
                ),
            }
            example = tf.train.Example(features=tf.train.Features(feature=feature))
            w.write(example.SerializeToString())
    return len(items)


def child_anchor(zip_path: str, work_dir: str, processes: int = 2) -> dict:
    """Unzip, list, shuffle, write; returns seconds per phase and the images written."""
    start = time.perf_counter()
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    subprocess.run(["unzip", "-q", zip_path, "-d", str(work / "tree")], check=True)
    unzipped = time.perf_counter()
    root = next((work / "tree").rglob("wnids.txt")).parent
    wnids = (root / "wnids.txt").read_text().split()
    label = {w: i for i, w in enumerate(wnids)}
    splits: dict[str, list[tuple[str, int, str]]] = {
        "train": [
            (str(f), label[w], w) for w in wnids for f in (root / "train" / w / "images").iterdir()
        ],
        "val": [
            (str(root / "val" / "images" / file), label[wnid], wnid)
            for file, wnid, *_ in (
                line.split("\t")
                for line in (root / "val" / "val_annotations.txt").read_text().splitlines()
            )
        ],
        "test": [(str(f), -1, "") for f in (root / "test" / "images").iterdir()],
    }
    jobs = []
    for split, items in splits.items():
        items.sort()
        random.Random(0).shuffle(items)
        n = SHARDS[split]
        for k in range(n):
            path = str(work / f"anchor-{split}.tfrecord-{k:05d}-of-{n:05d}")
            jobs.append((path, items[k * len(items) // n : (k + 1) * len(items) // n]))
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        images = sum(pool.map(_write, jobs, chunksize=1))
    end = time.perf_counter()
    return {
        "seconds": end - start,
        "phases": {"unzip": unzipped - start, "write": end - unzipped},
        "images": images,
    }
