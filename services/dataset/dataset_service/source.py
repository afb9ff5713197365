"""Get a tiny-imagenet-200 tree onto the volume: download, verify, extract safely, or generate.

- :func:`download` streams a URL to ``raw/downloads/`` (MD5 computed on the way, size limit,
  written under a temporary name and renamed once verified).
- :func:`extract_zip` refuses absolute names, ``..`` escapes, links and special files, and
  archives past ``max_bytes`` uncompressed (checked from the central directory, and each
  entry's declared size and CRC-32 again as it is read, since headers can lie). It extracts
  into a hidden temporary folder and renames it into place, so a half-extracted tree never
  looks complete.
- :func:`obtain_tree` ties it together for a request's source. An archive is read in place
  (:class:`dataset_service.tree.ZipTree`), and extracted only when the request asks for an
  ImageFolder tree: once per archive (``raw/extracted/archive-<md5>/``, shared by every dataset
  made from it), reorganized before it is renamed into place, and reused afterwards. A generated
  tree is reused while its spec is the same. Both are recorded in a marker file.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from dataset_service.errors import (
    ChecksumMismatch,
    LayoutError,
    PathOutsideDataRoot,
    PrepareError,
    SourceError,
)
from dataset_service.fetch import UrlPolicy, open_stream
from dataset_service.layout import find_root, validate
from dataset_service.tree import (
    DiskTree,
    Tree,
    ZipTree,
    checked_members,
    open_zip_tree,
    read_member,
)
from datavolume.files import CHUNK, atomic_write_json, file_digest, read_json
from datavolume.layout import DataRoot, OutsideRoot

if TYPE_CHECKING:
    from dataset_service.models import Source
    from dataset_service.settings import SourceLimits
    from jobkit.context import Context

#: Written inside an extracted/generated tree once complete: what it was made from.
MARKER_FILE = ".source.json"
DOWNLOAD_TIMEOUT_S = 60.0

Progress = Callable[[int, int | None], None]
CheckStop = Callable[[], None]
_DRIVE = re.compile(r"^[A-Za-z]:")


def _noop(*_: Any) -> None:
    return None


def md5_file(path: Path) -> str:
    return file_digest(path, "md5")


# ---------------------------------------------------------------------------- download


def download(
    url: str,
    dest: Path,
    *,
    expected_md5: str | None,
    max_bytes: int,
    policy: UrlPolicy,
    progress: Progress = _noop,
    check_stop: CheckStop = _noop,
    timeout_s: float = DOWNLOAD_TIMEOUT_S,
) -> str:
    """Stream ``url`` to ``dest`` and return the file's MD5.

    Only hosts ``policy`` allows are reached, on every redirect too (:mod:`.fetch`). A ``dest``
    already there with the expected MD5 is kept (no download). Raises :class:`SourceError` on
    HTTP errors, a refused address or past ``max_bytes``, :class:`ChecksumMismatch` when the
    MD5 differs; in every case nothing is left at ``dest``.
    """
    dest = Path(dest)
    if expected_md5 and dest.is_file() and md5_file(dest) == expected_md5:
        size = dest.stat().st_size
        progress(size, size)
        return expected_md5
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f".{dest.name}.partial-{os.getpid()}")
    h = hashlib.md5()
    try:
        with open_stream(url, policy, timeout_s) as response:
            if response.status_code != 200:
                raise SourceError(f"download of {url} failed: HTTP {response.status_code}")
            length = response.headers.get("content-length")
            total = int(length) if length and length.isdigit() else None
            if total is not None and total > max_bytes:
                raise SourceError(
                    f"download of {url} is {total} bytes, more than the limit of {max_bytes}"
                )
            done = 0
            progress(0, total)
            with open(partial, "wb") as f:
                for chunk in response.iter_bytes(CHUNK):
                    done += len(chunk)
                    if done > max_bytes:
                        raise SourceError(
                            f"download of {url} exceeds the limit of {max_bytes} bytes"
                        )
                    h.update(chunk)
                    f.write(chunk)
                    progress(done, total)
                    check_stop()
                f.flush()
                os.fsync(f.fileno())
        digest = h.hexdigest()
        if expected_md5 and digest != expected_md5:
            raise ChecksumMismatch(
                f"MD5 of {url} is {digest}, expected {expected_md5}: the download is corrupt "
                "or not the expected archive"
            )
        os.replace(partial, dest)
        return digest
    except httpx.HTTPError as exc:
        raise SourceError(f"download of {url} failed: {type(exc).__name__}: {exc}") from exc
    finally:
        partial.unlink(missing_ok=True)


# ---------------------------------------------------------------------------- extraction


def extract_zip(
    zip_path: Path,
    dest: Path,
    *,
    max_bytes: int,
    marker: dict[str, Any] | None = None,
    progress: Progress = _noop,
    check_stop: CheckStop = _noop,
    finish: Callable[[Path], None] = _noop,
    keep_existing: bool = False,
) -> Path:
    """Extract ``zip_path`` into ``dest`` (replacing it) safely; returns ``dest``.

    Every entry is checked from the central directory first (:func:`checked_members`), then
    read at its offset like the shards read it (:func:`read_member`: its declared size and
    CRC-32 enforced), and written; the folders are made once, up front.

    ``finish(folder)`` runs on the complete extraction before it is renamed into place, and
    ``marker`` is written to ``dest/.source.json`` then. With ``keep_existing``, a ``dest``
    another process completed meanwhile (same marker) is kept and this extraction dropped.
    Raises :class:`UnsafeArchive` for unsafe entries or size, :class:`SourceError` if the file
    is not a readable zip. Nothing is left at ``dest`` (nor half-extracted) on failure.
    """
    dest = Path(dest)
    label = Path(zip_path).name
    with _build_into(dest, marker, keep_existing=keep_existing) as partial:
        partial.mkdir()
        members = checked_members(Path(zip_path), max_bytes, label)
        files = [(m, rel) for m, rel in members if not m.is_dir]
        folders: set[str] = set()  # every folder the entries need, their parents included
        for member, rel in members:
            folder = rel.rstrip("/") if member.is_dir else rel.rpartition("/")[0]
            while folder and folder not in folders:
                folders.add(folder)
                folder = folder.rpartition("/")[0]
        clash = sorted(folders.intersection(rel for _, rel in files))
        if clash:
            raise SourceError(
                f"cannot extract zip entry {clash[0]!r}: it is a file, and a folder of others"
            )
        progress(0, len(members))
        root = str(partial)
        fd = os.open(zip_path, os.O_RDONLY)
        rel = ""
        try:
            # Sorted, a folder comes before the folders in it: each is made once.
            for rel in sorted(folders):
                os.mkdir(f"{root}/{rel}")
            done = len(members) - len(files)
            for member, rel in files:  # one pread, one inflate, one write each
                data = read_member(fd, member, label)
                with open(f"{root}/{rel}", "wb") as out:
                    out.write(data)
                done += 1
                if done % 256 == 0:
                    progress(done, len(members))
                    check_stop()
        except OSError as exc:
            raise SourceError(f"cannot extract zip entry {rel!r}: {exc.strerror or exc}") from exc
        finally:
            os.close(fd)
        progress(len(members), len(members))
        finish(partial)
    return dest


@contextmanager
def _build_into(
    dest: Path, marker: dict[str, Any] | None, *, keep_existing: bool = False
) -> Iterator[Path]:
    """Yield a partial folder beside ``dest`` to fill; on success write ``marker`` into it and
    swap it in for ``dest``; on any failure delete it. ``dest`` is never half-built. With
    ``keep_existing``, partial folders of other processes are left alone, and a complete
    ``dest`` (same marker) that appeared meanwhile wins over this one."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not keep_existing:
        _remove_stale_partials(dest)
    partial = dest.with_name(f".{dest.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        yield partial
        if marker is not None:
            atomic_write_json(partial / MARKER_FILE, marker)
        if keep_existing and marker is not None and _reusable(dest, marker):
            shutil.rmtree(partial, ignore_errors=True)
        else:
            _replace_dir(partial, dest)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def _remove_stale_partials(dest: Path) -> None:
    for stale in dest.parent.glob(f".{dest.name}.partial-*"):
        shutil.rmtree(stale, ignore_errors=True)
    for stale in dest.parent.glob(f".{dest.name}.old-*"):
        shutil.rmtree(stale, ignore_errors=True)


def _replace_dir(new: Path, dest: Path) -> None:
    """Rename ``new`` to ``dest``; an existing ``dest`` is moved aside first, then deleted."""
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
        dest.rename(old)
        new.rename(dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        new.rename(dest)


# ---------------------------------------------------------------------------- synthetic


def generate_synthetic(
    dest: Path,
    spec: Any,
    *,
    marker: dict[str, Any],
    processes: int | None,
    progress: Progress = _noop,
) -> Path:
    """Generate a synthetic tree into ``dest`` (replacing it); same temp-then-rename scheme."""
    from dataset_service.synthetic import generate

    dest = Path(dest)
    with _build_into(dest, marker) as partial:
        generate(partial, spec, processes=processes, progress=progress)
    return dest


# ---------------------------------------------------------------------------- orchestration


def _reusable(tree: Path, marker: dict[str, Any]) -> bool:
    return read_json(tree / MARKER_FILE, tolerate_corrupt=True) == marker


def _organize(folder: Path) -> None:
    """Validate an extracted tree and move its val images into class folders."""
    from dataset_service.reorganize import reorganize

    reorganize(validate(DiskTree(find_root(folder))))


def _checked_archive(archive: Path, expected_md5: str | None, label: str, max_bytes: int):
    """(MD5, zip tree) of ``archive``: the checksum is computed while the central directory is
    read and checked (hashlib releases the GIL); a wrong checksum is reported first."""
    with ThreadPoolExecutor(1) as pool:
        digest = pool.submit(md5_file, archive)
        tree: ZipTree | None = None
        error: PrepareError | None = None
        try:
            tree = open_zip_tree(archive, max_bytes=max_bytes, label=label)
        except PrepareError as exc:
            error = exc
        md5 = digest.result()
    if expected_md5 and md5 != expected_md5:
        raise ChecksumMismatch(f"MD5 of {label} is {md5}, expected {expected_md5}")
    if error is not None:
        if isinstance(error, LayoutError):  # name the archive the user gave
            raise LayoutError(f"{label}: {error}") from None
        raise error
    assert tree is not None
    return md5, tree


def _resolve(root: DataRoot, client_path: str) -> Path:
    try:
        return root.resolve(client_path)
    except OutsideRoot as exc:
        raise PathOutsideDataRoot(str(exc)) from None


def obtain_tree(
    source: Source,
    name: str,
    root: DataRoot,
    reporter: Context,
    limits: SourceLimits,
    *,
    image_folder: bool = False,
) -> tuple[Tree, dict[str, Any]]:
    """Make the source readable as a tree; returns (tree, provenance facts).

    Provenance facts: ``source`` (URL, path or spec) and ``md5`` of the archive when one was
    used. Phases: ``download`` (url), ``inspect`` (url, zip: checksum and central directory),
    ``extract`` (url, zip, with ``image_folder``), ``generate`` (synthetic).
    """
    if source.kind == "folder":
        folder = _resolve(root, source.path)
        if not folder.is_dir():
            raise SourceError(f"source folder {source.path!r} does not exist")
        origin = root.relative(folder)
        try:
            top = find_root(folder)
        except LayoutError as exc:
            raise LayoutError(f"{origin}: {exc}") from None
        tree = DiskTree(top, origin)
        tree.refuse_links()
        return tree, {"source": origin, "md5": None}

    if source.kind == "synthetic":
        from dataset_service.synthetic import SyntheticSpec

        target = root.generated_tree(name)
        spec = SyntheticSpec(**source.model_dump(exclude={"kind"}))
        marker = {"kind": "synthetic", "spec": asdict(spec)}
        description = "synthetic " + ",".join(f"{k}={v}" for k, v in marker["spec"].items())
        if not _reusable(target, marker):
            reporter.phase("generate", total=spec.total_images, unit="images")

            def progress(done: int, total: int | None) -> None:
                reporter.progress(done, total)
                reporter.check_stop()

            generate_synthetic(
                target,
                spec,
                marker=marker,
                processes=limits.processes,
                progress=progress,
            )
        top = find_root(target)
        return DiskTree(top, root.relative(top)), {"source": description, "md5": None}

    if source.kind == "url":
        url = str(source.url)
        archive = root.download(url)
        reporter.phase("download", unit="bytes")
        download(
            url,
            archive,
            expected_md5=source.md5,
            max_bytes=limits.max_download_bytes,
            policy=limits.url_policy,
            progress=reporter.progress,
            check_stop=reporter.check_stop,
        )
        origin = url
    else:  # zip
        archive = _resolve(root, source.path)
        if not archive.is_file():
            raise SourceError(f"source zip {source.path!r} does not exist")
        origin = root.relative(archive)

    label = root.relative(archive)
    reporter.phase("inspect")
    md5, tree = _checked_archive(archive, source.md5, label, limits.max_extract_bytes)
    facts = {"source": origin, "md5": md5}
    if not image_folder:
        return tree, facts
    target = root.archive_tree(md5)
    marker = {"kind": "archive", "md5": md5, "size": archive.stat().st_size}
    if not _reusable(target, marker):
        reporter.phase("extract", unit="files")
        extract_zip(
            archive,
            target,
            max_bytes=limits.max_extract_bytes,
            marker=marker,
            progress=reporter.progress,
            check_stop=reporter.check_stop,
            finish=_organize,
            keep_existing=True,
        )
    top = find_root(target)
    return DiskTree(top, root.relative(top)), facts
