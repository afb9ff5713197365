"""The synthetic tiny-imagenet-200 generator: layout, formats, oddities, determinism, zip, CLI,
and that its classes can be told apart."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dataset_service import layout_names
from dataset_service.synthetic import SyntheticSpec, generate, main, pack_zip

SMALL = SyntheticSpec(classes=4, train_per_class=12, val_per_class=3, test_images=8, seed=1)
WNID_RE = re.compile(r"^n0\d{7}$")


def tree_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for name, data in sorted(tree_files(root).items()):
        h.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return h.hexdigest()


def read_lines(path: Path) -> list[str]:
    text = path.read_text()
    assert text.endswith("\n") and "\r" not in text
    return text.splitlines()


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    calls: list[tuple[int, int]] = []
    out = generate(
        tmp_path_factory.mktemp("small"),
        SMALL,
        processes=2,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert out.name == "tiny-imagenet-200"
    assert calls[0] == (0, 68) and calls[-1] == (68, 68)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    return out


@pytest.fixture(scope="module")
def wnids(small: Path) -> list[str]:
    return read_lines(small / "wnids.txt")


def test_wnids_file(wnids: list[str]) -> None:
    assert len(wnids) == 4 == len(set(wnids))
    assert all(WNID_RE.match(w) for w in wnids)


def test_exact_tree(small: Path, wnids: list[str]) -> None:
    expected = {"wnids.txt", "words.txt", "train", "val", "val/images", "test", "test/images"}
    expected.add("val/val_annotations.txt")
    for w in wnids:
        expected |= {f"train/{w}", f"train/{w}/images", f"train/{w}/{w}_boxes.txt"}
        expected |= {f"train/{w}/images/{w}_{i}.JPEG" for i in range(12)}
    expected |= {f"val/images/val_{i}.JPEG" for i in range(12)}
    expected |= {f"test/images/test_{i}.JPEG" for i in range(8)}
    actual = {p.relative_to(small).as_posix() for p in small.rglob("*")}
    assert actual == expected
    assert not [p for p in small.parent.iterdir() if p.name != "tiny-imagenet-200"]


def test_words_file(small: Path, wnids: list[str]) -> None:
    lines = read_lines(small / "words.txt")
    fields = [line.split("\t") for line in lines]
    assert all(len(f) == 2 and f[1].strip() for f in fields)
    listed = [f[0] for f in fields]
    assert len(lines) == 12 and len(set(listed)) == 12  # the 4 classes plus 8 unrelated wnids
    assert set(wnids) <= set(listed)
    assert all(WNID_RE.match(w) for w in listed)
    assert listed == sorted(listed)


def check_box(fields: list[str]) -> None:
    x0, y0, x1, y1 = (int(v) for v in fields)
    assert 0 <= x0 <= x1 <= 63 and 0 <= y0 <= y1 <= 63


def test_boxes_files(small: Path, wnids: list[str]) -> None:
    for w in wnids:
        lines = read_lines(small / "train" / w / f"{w}_boxes.txt")
        assert [line.split("\t")[0] for line in lines] == [f"{w}_{i}.JPEG" for i in range(12)]
        for line in lines:
            fields = line.split("\t")
            assert len(fields) == 5
            check_box(fields[1:])


def test_val_annotations(small: Path, wnids: list[str]) -> None:
    lines = read_lines(small / "val" / "val_annotations.txt")
    fields = [line.split("\t") for line in lines]
    assert all(len(f) == 6 for f in fields)
    assert [f[0] for f in fields] == [f"val_{i}.JPEG" for i in range(12)]
    assert all((small / "val" / "images" / f[0]).is_file() for f in fields)
    labels = [f[1] for f in fields]
    assert Counter(labels) == dict.fromkeys(wnids, 3)
    assert labels != sorted(labels, key=wnids.index)  # classes are mixed, not in blocks
    for f in fields:
        check_box(f[2:])


def open_all(root: Path) -> dict[str, tuple[str, str, tuple[int, int], int]]:
    """relative path -> (format, mode, size, bytes) for every image."""
    info = {}
    for p in root.rglob("*.JPEG"):
        with Image.open(p) as im:
            im.load()
            info[p.relative_to(root).as_posix()] = (im.format, im.mode, im.size, p.stat().st_size)
    return info


def test_images_formats_and_oddities(small: Path) -> None:
    info = open_all(small)
    assert len(info) == 48 + 12 + 8
    assert all(size == (64, 64) for _, _, size, _ in info.values())
    train = [v for k, v in info.items() if k.startswith("train/")]
    val = [v for k, v in info.items() if k.startswith("val/")]
    assert sum(mode == "L" for _, mode, _, _ in train) >= 1
    assert sum(mode == "CMYK" and fmt == "JPEG" for fmt, mode, _, _ in train) >= 1
    assert sum(fmt == "PNG" for fmt, _, _, _ in train) >= 1
    assert sum(mode == "L" for _, mode, _, _ in val) >= 1
    assert {fmt for fmt, _, _, _ in val} == {"JPEG"}
    assert {mode for fmt, mode, _, _ in info.values() if fmt == "JPEG"} <= {"RGB", "L", "CMYK"}
    jpeg_sizes = [n for fmt, _, _, n in info.values() if fmt == "JPEG"]
    assert 1000 <= np.mean(jpeg_sizes) <= 4000


def test_oddities_in_a_minimal_train_split(tmp_path: Path) -> None:
    spec = SyntheticSpec(classes=3, train_per_class=1, val_per_class=1, test_images=0, seed=3)
    out = generate(tmp_path, spec, processes=1)
    kinds = sorted(
        (fmt, mode) for k, (fmt, mode, _, _) in open_all(out).items() if k.startswith("train/")
    )
    assert kinds == [("JPEG", "CMYK"), ("JPEG", "L"), ("PNG", "RGB")]
    assert not list((out / "test" / "images").iterdir())


def test_deterministic_whatever_the_processes(small: Path, tmp_path: Path) -> None:
    again = generate(tmp_path / "a", SMALL, processes=1)
    assert tree_digest(again) == tree_digest(small)
    other = generate(tmp_path / "b", dataclasses.replace(SMALL, seed=2), processes=1)
    assert tree_digest(other) != tree_digest(small)
    assert read_lines(other / "wnids.txt") != read_lines(small / "wnids.txt")


def test_zip_is_the_tree_and_byte_identical(small: Path, tmp_path: Path) -> None:
    z1 = pack_zip(small, tmp_path / "one.zip")
    again = generate(tmp_path / "gen", SMALL, processes=1, zip_path=tmp_path / "two.zip")
    z2 = tmp_path / "two.zip"
    assert z1.read_bytes() == z2.read_bytes()
    files = tree_files(again)
    with zipfile.ZipFile(z1) as zf:
        names = zf.namelist()
        assert all(n.startswith("tiny-imagenet-200/") for n in names)
        assert names[0] == "tiny-imagenet-200/"
        stored = {n.removeprefix("tiny-imagenet-200/"): n for n in names if not n.endswith("/")}
        assert set(stored) == set(files)
        for rel, name in stored.items():
            assert zf.read(name) == files[rel]
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_STORED}
        assert "tiny-imagenet-200/val/images/" in names
        assert zf.testzip() is None


def test_refuses_non_empty_target(small: Path, tmp_path: Path) -> None:
    before = tree_digest(small)
    with pytest.raises(FileExistsError, match="not empty"):
        generate(small.parent, SMALL, processes=1)
    assert tree_digest(small) == before
    (tmp_path / "tiny-imagenet-200").mkdir()  # an empty target is fine
    out = generate(
        tmp_path,
        SyntheticSpec(classes=1, train_per_class=1, val_per_class=0, test_images=0),
        processes=1,
    )
    assert (out / "wnids.txt").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["tiny-imagenet-200"]  # no leftovers


def test_spec_validation() -> None:
    for bad in (
        {"classes": 0},
        {"classes": 5000},
        {"quality": 0},
        {"train_per_class": -1},
        {"grayscale_fraction": 1.5},
        {"seed": -1},
    ):
        with pytest.raises(ValueError):
            SyntheticSpec(**bad)


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        str(tmp_path),
        "--classes",
        "2",
        "--train-per-class",
        "3",
        "--val-per-class",
        "2",
        "--test",
        "2",
        "--seed",
        "7",
        "--zip",
        "--processes",
        "1",
    ]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "12/12 images (100%)" in err
    assert "tiny-imagenet-200" in out
    root = tmp_path / "tiny-imagenet-200"
    assert len(read_lines(root / "wnids.txt")) == 2
    assert len(list(root.rglob("*.JPEG"))) == 12
    with zipfile.ZipFile(tmp_path / "tiny-imagenet-200.zip") as zf:
        assert "tiny-imagenet-200/wnids.txt" in zf.namelist()
    assert main(argv) == 1  # refuses to overwrite
    assert "refusing" in capsys.readouterr().err
    assert main([str(tmp_path / "x"), "--classes", "0"]) == 2


def test_layout_names() -> None:
    assert layout_names.ROOT_DIR_NAME == "tiny-imagenet-200"
    assert layout_names.ARCHIVE_NAME == "tiny-imagenet-200.zip"
    assert layout_names.train_image_name("n01443537", 3) == "n01443537_3.JPEG"
    assert layout_names.boxes_file_name("n01443537") == "n01443537_boxes.txt"
    assert layout_names.val_image_name(9) == "val_9.JPEG"
    assert layout_names.test_image_name(0) == "test_0.JPEG"


# --------------------------------------------------------------------------- learnability


def load_split(root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    wnids = read_lines(root / "wnids.txt")

    def load(path: Path) -> np.ndarray:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.float32)

    x_train, y_train = [], []
    for k, w in enumerate(wnids):
        for i in range(len(list((root / "train" / w / "images").iterdir()))):
            x_train.append(load(root / "train" / w / "images" / f"{w}_{i}.JPEG"))
            y_train.append(k)
    x_val, y_val = [], []
    for line in read_lines(root / "val" / "val_annotations.txt"):
        name, wnid = line.split("\t")[:2]
        x_val.append(load(root / "val" / "images" / name))
        y_val.append(wnids.index(wnid))
    return np.stack(x_train), np.array(y_train), np.stack(x_val), np.array(y_val)


def spectrum_features(x: np.ndarray) -> np.ndarray:
    """Log magnitude of the low frequencies of the grayscale image: blind to stripe phase."""
    gray = x.mean(axis=-1)
    gray -= gray.mean(axis=(1, 2), keepdims=True)
    mag = np.abs(np.fft.fftshift(np.fft.fft2(gray), axes=(1, 2)))[:, 16:49, 16:49]
    return np.log1p(mag).reshape(len(x), -1)


def mean_colour_features(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=(1, 2))


def nearest_class_mean_accuracy(features, x_train, y_train, x_val, y_val) -> float:
    a, b = features(x_train), features(x_val)
    mu, sd = a.mean(0), a.std(0) + 1e-6
    a, b = (a - mu) / sd, (b - mu) / sd
    means = np.stack([a[y_train == k].mean(0) for k in range(y_train.max() + 1)])
    dist = ((b[:, None, :] - means[None]) ** 2).sum(-1)
    return float((dist.argmin(1) == y_val).mean())


def test_classes_are_learnable_but_not_by_colour_alone(tmp_path: Path) -> None:
    spec = SyntheticSpec(classes=10, train_per_class=40, val_per_class=10, test_images=0, seed=4)
    root = generate(tmp_path, spec, processes=2)
    data = load_split(root)
    by_pattern = nearest_class_mean_accuracy(spectrum_features, *data)
    by_colour = nearest_class_mean_accuracy(mean_colour_features, *data)
    assert by_pattern > 0.5  # chance is 0.1
    assert by_colour < 0.7 and by_colour < by_pattern - 0.15
    # About 2% grayscale JPEGs among the 500 images.
    modes = Counter(mode for _, mode, _, _ in open_all(root).values())
    assert 0.005 <= modes["L"] / modes.total() <= 0.05
