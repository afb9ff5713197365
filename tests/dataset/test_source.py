import hashlib
import os
import shutil
import zipfile

import pytest

from dataset_service.errors import ChecksumMismatch, SourceError, UnsafeArchive
from dataset_service.fetch import UrlPolicy, UrlRefused
from dataset_service.layout_names import ROOT_DIR_NAME, WNIDS_FILE
from dataset_service.models import FolderSource, SyntheticSource, UrlSource, ZipSource
from dataset_service.source import MARKER_FILE, download, extract_zip, md5_file
from dataset_service.tree import ZipTree, checked_members, read_central_directory, read_member
from jobkit.context import LocalContext
from tests.dataset.support import (
    SMALL,
    make_settings,
    obtain,
    serve_directory,
    symlink_info,
    write_zip,
)

LOOPBACK = UrlPolicy.of("127.0.0.1")  # the test server's address, allowed as a lab mirror


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _extract(archive, out, max_bytes):
    return extract_zip(archive, out, max_bytes=max_bytes)


def _read_in_place(archive, out, max_bytes):
    """What a prepare does with an archive it reads in place: check every entry, read them."""
    fd = os.open(archive, os.O_RDONLY)
    try:
        for member, _ in checked_members(archive, max_bytes, archive.name):
            if not member.is_dir:
                read_member(fd, member, archive.name)
    finally:
        os.close(fd)


#: The two ways an archive is opened: extracted (ImageFolder on request) and read in place.
READERS = pytest.mark.parametrize("read", [_extract, _read_in_place], ids=["extract", "in-place"])


# ---------------------------------------------------------------------------- extraction


def test_extract_writes_the_tree_and_its_marker(pristine_zip, tmp_path):
    dest = extract_zip(pristine_zip, tmp_path / "out", max_bytes=10**8, marker={"m": 1})
    assert (dest / ROOT_DIR_NAME / WNIDS_FILE).is_file()
    assert (dest / MARKER_FILE).read_text().strip().startswith("{")
    names = {n for n in zipfile.ZipFile(pristine_zip).namelist() if not n.endswith("/")}
    extracted = {
        str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file() and p.name != MARKER_FILE
    }
    assert extracted == names
    assert not list(tmp_path.glob(".out.partial-*"))


def test_extract_makes_the_folders_an_archive_without_folder_entries_needs(tmp_path):
    archive = write_zip(
        tmp_path / "flat.zip",
        [("t/a/b/c/deep.txt", b"deep"), ("t/a/top.txt", b"top"), ("t/z/x.txt", b"x")],
    )
    dest = extract_zip(archive, tmp_path / "out", max_bytes=10**6)
    assert (dest / "t/a/b/c/deep.txt").read_bytes() == b"deep"
    assert (dest / "t/a/top.txt").read_bytes() == b"top"
    assert (dest / "t/z/x.txt").read_bytes() == b"x"


def test_extract_replaces_an_existing_tree(pristine_zip, tmp_path):
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "stale.txt").write_text("old")
    extract_zip(pristine_zip, dest, max_bytes=10**8)
    assert not (dest / "stale.txt").exists()
    assert (dest / ROOT_DIR_NAME / WNIDS_FILE).is_file()


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("../evil.txt", "escapes"),
        ("tiny-imagenet-200/../../evil.txt", "escapes"),
        ("/etc/evil.txt", "absolute"),
        ("C:/evil.txt", "absolute"),
        ("..\\evil.txt", "escapes"),
    ],
)
@READERS
def test_entries_escaping_the_target_are_refused(tmp_path, entry, message, read):
    archive = write_zip(tmp_path / "bad.zip", [("ok.txt", b"fine"), (entry, b"evil")])
    with pytest.raises(UnsafeArchive, match=message):
        read(archive, tmp_path / "out", 10**6)
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "evil.txt").exists()
    assert not list(tmp_path.glob(".out.partial-*"))


@READERS
def test_symlink_entries_are_refused(tmp_path, read):
    archive = write_zip(tmp_path / "link.zip", [(symlink_info("tree/link"), b"/etc/passwd")])
    with pytest.raises(UnsafeArchive, match="symbolic link"):
        read(archive, tmp_path / "out", 10**6)
    assert not (tmp_path / "out").exists()


@READERS
def test_zip_bomb_is_refused_from_the_central_directory(tmp_path, read):
    big = b"\0" * 200_000  # compresses to almost nothing
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for i in range(5):
            zf.writestr(f"tree/f{i}", big)
    assert archive.stat().st_size < 10_000
    with pytest.raises(UnsafeArchive, match="limit of 500000 bytes"):
        read(archive, tmp_path / "out", 500_000)
    assert not (tmp_path / "out").exists()


@READERS
def test_entry_larger_than_its_header_says_is_refused_while_reading(tmp_path, read):
    """A header claiming fewer bytes than the entry holds cannot smuggle bytes past the limit."""
    archive = tmp_path / "liar.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("tree/big", b"\0" * 100_000)
    data = bytearray(archive.read_bytes())
    # Patch the uncompressed size (100000) in the local header and the central directory to 10.
    real = (100_000).to_bytes(4, "little")
    assert data.count(real) == 2
    data = data.replace(real, (10).to_bytes(4, "little"))
    archive.write_bytes(bytes(data))
    with pytest.raises(SourceError):
        read(archive, tmp_path / "out", 1000)
    assert not (tmp_path / "out").exists()


@READERS
def test_a_corrupt_deflate_stream_is_a_source_error_naming_entry_and_archive(tmp_path, read):
    archive = tmp_path / "broken.zip"
    payload = os.urandom(4096).hex().encode()  # compressible, so the stream is real deflate
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("tiny-imagenet-200/wnids.txt", payload)
    data = bytearray(archive.read_bytes())
    start = 30 + len("tiny-imagenet-200/wnids.txt")  # the local header, then the stream
    data[start + 10 : start + 60] = b"\xff" * 50
    archive.write_bytes(bytes(data))
    with pytest.raises(SourceError) as caught:
        read(archive, tmp_path / "out", 10**7)
    assert "broken.zip" in str(caught.value)
    assert "'tiny-imagenet-200/wnids.txt' is corrupt" in str(caught.value)
    assert not (tmp_path / "out").exists()


@READERS
def test_not_a_zip_is_a_source_error(tmp_path, read):
    fake = tmp_path / "fake.zip"
    fake.write_bytes(b"not a zip at all")
    with pytest.raises(SourceError, match="not a readable zip"):
        read(fake, tmp_path / "out", 10**6)


def _as_zipfile_sees_it(path):
    return [
        (i.filename, i.flag_bits, i.compress_type, i.CRC, i.compress_size, i.file_size,
         i.external_attr >> 16, i.header_offset)
        for i in zipfile.ZipFile(path).infolist()
    ]  # fmt: skip


def test_the_central_directory_reads_as_zipfile_reads_it(pristine_zip, tmp_path):
    assert [tuple(m) for m in read_central_directory(pristine_zip)] == _as_zipfile_sees_it(
        pristine_zip
    )
    # More than 65,535 entries: a zip64 end record; a stub before the archive shifts offsets.
    many = tmp_path / "many.zip"
    with zipfile.ZipFile(many, "w") as zf:
        for i in range(70_000):
            zf.writestr(f"d/f{i}", b"x")
        zf.writestr("d/ünicode.txt", b"utf-8 name")
    shifted = tmp_path / "shifted.zip"
    shifted.write_bytes(b"#!stub\n" * 100 + pristine_zip.read_bytes())
    for path in (many, shifted):
        assert [tuple(m) for m in read_central_directory(path)] == _as_zipfile_sees_it(path)


# ---------------------------------------------------------------------------- download


def test_download_streams_verifies_and_reports_progress(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    payload = os.urandom(3 * 1024 * 1024 + 17)
    (served / "a.zip").write_bytes(payload)
    seen = []
    with serve_directory(served) as base:
        digest = download(
            f"{base}/a.zip",
            tmp_path / "dl" / "a.zip",
            expected_md5=_md5(payload),
            max_bytes=10**8,
            policy=LOOPBACK,
            progress=lambda done, total: seen.append((done, total)),
        )
    assert digest == _md5(payload)
    assert (tmp_path / "dl" / "a.zip").read_bytes() == payload
    assert seen[-1] == (len(payload), len(payload))
    assert len(seen) > 2
    assert not list((tmp_path / "dl").glob(".*partial*"))


def test_download_with_a_wrong_md5_leaves_nothing(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    (served / "a.zip").write_bytes(b"payload")
    with serve_directory(served) as base, pytest.raises(ChecksumMismatch, match=r"expected 0+"):
        download(f"{base}/a.zip", tmp_path / "a.zip", expected_md5="0" * 32, max_bytes=10**6,
                 policy=LOOPBACK)  # fmt: skip
    assert list(tmp_path.glob("*a.zip*")) == []


def test_download_http_error_and_size_limit(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    (served / "big.zip").write_bytes(b"x" * 5000)
    with serve_directory(served) as base:
        with pytest.raises(SourceError, match="HTTP 404"):
            download(f"{base}/missing.zip", tmp_path / "m.zip", expected_md5=None, max_bytes=10,
                     policy=LOOPBACK)  # fmt: skip
        with pytest.raises(SourceError, match="more than the limit"):
            download(f"{base}/big.zip", tmp_path / "b.zip", expected_md5=None, max_bytes=1000,
                     policy=LOOPBACK)  # fmt: skip
    assert not (tmp_path / "m.zip").exists() and not (tmp_path / "b.zip").exists()


def test_download_unreachable_host_is_a_source_error(tmp_path):
    with pytest.raises(SourceError, match="failed"):
        download("http://127.0.0.1:9/x.zip", tmp_path / "x.zip", expected_md5=None, max_bytes=10,
                 policy=LOOPBACK)  # fmt: skip


def test_download_refuses_non_public_addresses_by_default(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    (served / "a.zip").write_bytes(b"secret")
    with serve_directory(served) as base:
        for url in (f"{base}/a.zip", base.replace("127.0.0.1", "localhost") + "/a.zip"):
            with pytest.raises(UrlRefused, match="refused: address not allowed") as caught:
                download(url, tmp_path / "a.zip", expected_md5=None, max_bytes=10**6,
                         policy=UrlPolicy())  # fmt: skip
            assert "secret" not in str(caught.value)
    assert not (tmp_path / "a.zip").exists()


# ---------------------------------------------------------------------------- obtain_tree


def _zip_on_volume(pristine_zip, data_root, rel="raw/in.zip"):
    target = data_root / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(pristine_zip.read_bytes())
    return ZipSource(kind="zip", path=rel, md5=md5_file(pristine_zip))


def test_zip_source_is_read_in_place(pristine, pristine_zip, data_root):
    source = _zip_on_volume(pristine_zip, data_root)
    reporter = LocalContext()
    tree, facts = obtain(source, "t", make_settings(data_root), reporter)
    assert isinstance(tree, ZipTree) and tree.label == "raw/in.zip"
    assert facts == {"source": "raw/in.zip", "md5": md5_file(pristine_zip)}
    assert reporter.phases == ["inspect"]
    assert not (data_root / "raw" / "extracted").exists()  # nothing extracted
    assert tree.read_text(WNIDS_FILE) == (pristine / WNIDS_FILE).read_text()
    assert tree.files("test/images") == sorted(p.name for p in (pristine / "test/images").iterdir())


def test_image_folder_is_extracted_once_per_archive_reorganized_and_reused(
    pristine, pristine_zip, data_root
):
    source = _zip_on_volume(pristine_zip, data_root)
    settings = make_settings(data_root)
    reporter = LocalContext()
    tree, _ = obtain(source, "t", settings, reporter, image_folder=True)
    md5 = md5_file(pristine_zip)
    assert tree.root == data_root / "raw" / "extracted" / f"archive-{md5}" / ROOT_DIR_NAME
    assert reporter.phases == ["inspect", "extract"]
    wnid = (pristine / WNIDS_FILE).read_text().split()[0]
    assert not (tree.root / "val" / "images").exists()  # reorganized before it appeared
    assert any((tree.root / "val" / wnid / "images").iterdir())
    stamp = (tree.root / WNIDS_FILE).stat().st_mtime_ns
    again = LocalContext()  # another dataset name, same archive: the same tree, not extracted
    assert obtain(source, "other", settings, again, image_folder=True)[0].root == tree.root
    assert again.phases == ["inspect"]
    assert (tree.root / WNIDS_FILE).stat().st_mtime_ns == stamp
    assert [p.name for p in (data_root / "raw" / "extracted").iterdir()] == [f"archive-{md5}"]


def test_zip_source_with_wrong_md5_fails(pristine_zip, data_root):
    (data_root / "a.zip").write_bytes(pristine_zip.read_bytes())
    source = ZipSource(kind="zip", path="a.zip", md5="0" * 32)
    with pytest.raises(ChecksumMismatch):
        obtain(source, "t", make_settings(data_root), LocalContext())


def test_url_source_downloads_into_raw(pristine_zip, data_root):
    with serve_directory(pristine_zip.parent) as base:
        source = UrlSource(
            kind="url", url=f"{base}/{pristine_zip.name}", md5=md5_file(pristine_zip)
        )
        reporter = LocalContext()
        root, facts = obtain(source, "u", make_settings(data_root), reporter)
    assert reporter.phases == ["download", "inspect"]
    assert (data_root / "raw" / "downloads" / pristine_zip.name).is_file()
    assert root.read_text(WNIDS_FILE) and facts["md5"] == md5_file(pristine_zip)


def test_folder_source_is_used_in_place(pristine, data_root):
    shutil.copytree(pristine, data_root / "mine" / ROOT_DIR_NAME)
    root, facts = obtain(
        FolderSource(kind="folder", path="mine"), "f", make_settings(data_root), LocalContext()
    )
    assert root.root == (data_root / "mine" / ROOT_DIR_NAME).resolve()
    assert facts == {"source": "mine", "md5": None}


@pytest.mark.parametrize("link", ["val-class", "train-image"])
def test_a_folder_source_with_a_link_inside_is_refused_and_nothing_moves(
    pristine, data_root, tmp_path, link
):
    tree = data_root / "mine" / ROOT_DIR_NAME
    shutil.copytree(pristine, tree)
    outside = tmp_path / "outside"
    outside.mkdir()
    if link == "val-class":  # reorganize would move val images out of the data root
        wnid = (tree / "wnids.txt").read_text().split()[0]
        (tree / "val" / wnid).symlink_to(outside, target_is_directory=True)
        named = f"val/{wnid}"
    else:  # a train image read from outside the data root
        image = next((tree / "train").glob("*/images/*.JPEG"))
        (outside / "x.JPEG").write_bytes(image.read_bytes())
        image.unlink()
        image.symlink_to(outside / "x.JPEG")
        named = str(image.relative_to(tree))
    before = sorted(p.relative_to(tree) for p in tree.rglob("*"))
    with pytest.raises(UnsafeArchive, match=f"{named} is a symbolic link; links are not allowed"):
        obtain(FolderSource(kind="folder", path="mine"), "f", make_settings(data_root),
               LocalContext())  # fmt: skip
    assert sorted(p.relative_to(tree) for p in tree.rglob("*")) == before
    assert [p.name for p in outside.iterdir()] == (["x.JPEG"] if link == "train-image" else [])


def test_synthetic_source_is_generated_once(data_root):
    settings = make_settings(data_root)
    source = SyntheticSource(kind="synthetic", **SMALL)
    reporter = LocalContext()
    _, facts = obtain(source, "s", settings, reporter)
    assert reporter.phases == ["generate"] and "classes=4" in facts["source"]
    again = LocalContext()
    obtain(source, "s", settings, again)
    assert again.phases == []
    other = LocalContext()
    obtain(source.model_copy(update={"seed": 1}), "s", settings, other)
    assert other.phases == ["generate"]  # a different spec is generated afresh


def test_entry_that_cannot_be_created_is_a_source_error(tmp_path):
    archive = write_zip(tmp_path / "clash.zip", [("tree/a", b"file"), ("tree/a/b", b"below")])
    with pytest.raises(SourceError, match="cannot extract zip entry 'tree/a': it is a file, and"):
        extract_zip(archive, tmp_path / "out", max_bytes=10**6)
    assert not (tmp_path / "out").exists()
