"""Helpers of the dataset service's tests: small specs, reading shards back, zips, a file server."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import threading
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from dataset_service.layout_names import VAL_ANNOTATIONS, VAL_DIR
from dataset_service.settings import Settings
from dataset_service.synthetic import SyntheticSpec
from datavolume import DataRoot
from shard_format.schema import METADATA_FILE

#: Small enough for a test: 80 train, 20 val, 10 test images.
SMALL = {"classes": 4, "train_per_class": 20, "val_per_class": 5, "test_images": 10, "seed": 0}
SMALL_SPEC = SyntheticSpec(**SMALL)
SMALL_TOTAL = SMALL_SPEC.total_images
#: Shards of about 20 kB: the small dataset gets several train shards.
SMALL_SHARD_BYTES = 20_000


def make_settings(data_root: Path, **overrides) -> Settings:
    values = {
        "data_root": data_root,
        "writer_processes": 1,
        "target_shard_bytes": SMALL_SHARD_BYTES,
        "cancel_grace_s": 5.0,
        "max_extract_bytes": 50 * 1024**2,
        "max_download_bytes": 50 * 1024**2,
        "allowed_url_hosts": "127.0.0.1",  # the tests serve archives on loopback
    }
    values.update(overrides)
    return Settings(**values)


def read_split(folder: Path, paths: list[Path]) -> list[dict]:
    """Every record of ``paths`` parsed with the shared ``parse``: plain Python values."""
    import tensorflow as tf

    from shard_format.records import parse

    out = []
    for path in paths:
        for raw in tf.data.TFRecordDataset([str(path)]):
            rec = parse(raw)
            out.append(
                {
                    "image": rec["image"].numpy(),
                    "label": int(rec["label"]),
                    "wnid": rec["wnid"].numpy().decode(),
                    "file_name": rec["file_name"].numpy().decode(),
                    "shard": path.name,
                }
            )
    return out


def read_dataset_records(data_root: Path, name: str) -> dict[str, list[dict]]:
    from shard_format.metadata import load_metadata

    folder = DataRoot(data_root).dataset(name)
    metadata = load_metadata(folder)
    return {s: read_split(folder, metadata.shard_paths(folder, s)) for s in metadata.splits}


def pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def expected_sources(pristine_tree: Path) -> dict[str, dict[str, tuple[int, str, Path]]]:
    """Per split: file name -> (label, wnid, source path) of the tree as shipped."""
    wnids = (pristine_tree / "wnids.txt").read_text().split()
    index = {w: i for i, w in enumerate(wnids)}
    train = {
        p.name: (index[p.parent.parent.name], p.parent.parent.name, p)
        for p in (pristine_tree / "train").glob("*/images/*")
    }
    val = {}
    for line in (pristine_tree / VAL_DIR / VAL_ANNOTATIONS).read_text().splitlines():
        file_name, wnid = line.split("\t")[:2]
        val[file_name] = (index[wnid], wnid, pristine_tree / VAL_DIR / "images" / file_name)
    test = {p.name: (-1, "", p) for p in (pristine_tree / "test" / "images").iterdir()}
    return {"train": train, "val": val, "test": test}


def assert_records_match_sources(records: dict[str, list[dict]], pristine_tree: Path) -> None:
    """One record per source image, same label, wnid and file name, same pixels (RGB JPEGs
    byte for byte, others after conversion to RGB within JPEG re-encoding error)."""
    from dataset_service.images import to_rgb_jpeg

    expected = expected_sources(pristine_tree)
    assert set(records) == set(expected)
    for split, recs in records.items():
        names = [r["file_name"] for r in recs]
        assert len(names) == len(set(names)), f"duplicate records in {split}"
        assert set(names) == set(expected[split]), split
        for rec in recs:
            label, wnid, path = expected[split][rec["file_name"]]
            assert (rec["label"], rec["wnid"]) == (label, wnid), rec["file_name"]
            source = path.read_bytes()
            converted = to_rgb_jpeg(source, str(path))
            assert rec["image"] == converted.data
            if not converted.re_encoded:
                assert rec["image"] == source
            else:
                diff = np.abs(pixels(rec["image"]).astype(int) - pixels(source).astype(int))
                assert diff.mean() < 5.0, rec["file_name"]


def shard_hashes(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if ".tfrecord-" in p.name
    }


def metadata_without_time(folder: Path) -> dict:
    raw = json.loads((folder / METADATA_FILE).read_text())
    raw["provenance"].pop("created_at")
    return raw


def is_ready(data_root: Path, name: str) -> bool:
    return (DataRoot(data_root).dataset(name) / METADATA_FILE).exists()


def write_zip(path: Path, entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for info, data in entries:
            zf.writestr(info, data)
    return path


def symlink_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = 0o120777 << 16
    return info


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@contextmanager
def serve_directory(directory: Path) -> Iterator[str]:
    """Serve ``directory`` over HTTP on 127.0.0.1 (a free port); yields the base URL."""
    handler = partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def wait_for(predicate, timeout_s: float = 120.0, interval_s: float = 0.05):
    """Poll ``predicate()`` until it returns something truthy; returns that value."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout_s} s")
        time.sleep(interval_s)


def obtain(source, name: str, settings: Settings, reporter, **kwargs):
    """``obtain_tree`` as ``prepare`` calls it with these settings."""
    from dataset_service.source import obtain_tree

    return obtain_tree(source, name, settings.volume, reporter, settings.source_limits, **kwargs)
