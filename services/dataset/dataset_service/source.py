"""Get a tiny-imagenet-200 tree onto the volume: download, verify, extract safely, or generate.

- :func:`download` streams a URL to ``raw/downloads/`` (MD5 computed on the way, size limit,
  written under a temporary name and renamed once verified).
- :func:`extract_zip` refuses absolute names, ``..`` escapes, links and special files, and
  archives past ``max_bytes`` uncompressed (checked from the central directory *and* while
  streaming, since headers can lie). It extracts into a hidden temporary folder and renames it
  into place, so a half-extracted tree never looks complete.
- :func:`obtain_tree` ties it together for a request's source and reuses a tree already
  extracted (or generated) from the same archive (or spec), recorded in a marker file.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import httpx

from dataset_service.errors import ChecksumMismatch, LayoutError, SourceError, UnsafeArchive
from dataset_service.files import CHUNK, file_digest, read_json
from dataset_service.layout import find_root
from dataset_service.paths import (
    download_file_name,
    downloads_dir,
    extracted_dir,
    relative_to_root,
    resolve_inside,
)
from jobkit.files import atomic_write_json

if TYPE_CHECKING:
    from dataset_service.config import Settings
    from dataset_service.models import Source
    from dataset_service.reporting import Reporter

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
    progress: Progress = _noop,
    check_stop: CheckStop = _noop,
    timeout_s: float = DOWNLOAD_TIMEOUT_S,
) -> str:
    """Stream ``url`` to ``dest`` and return the file's MD5.

    A ``dest`` already there with the expected MD5 is kept (no download). Raises
    :class:`SourceError` on HTTP errors or past ``max_bytes``, :class:`ChecksumMismatch` when
    the MD5 differs; in both cases nothing is left at ``dest``.
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
        with httpx.stream("GET", url, follow_redirects=True, timeout=timeout_s) as response:
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


def _check_member(info: zipfile.ZipInfo) -> PurePosixPath:
    """The member's relative path; raises :class:`UnsafeArchive` for anything unsafe."""
    name = info.filename
    if not name or "\x00" in name:
        raise UnsafeArchive(f"zip entry {name!r} has an empty or invalid name")
    posix = name.replace("\\", "/")
    if posix.startswith("/") or _DRIVE.match(posix):
        raise UnsafeArchive(f"zip entry {name!r} is an absolute path")
    path = PurePosixPath(posix)
    if ".." in path.parts:
        raise UnsafeArchive(f"zip entry {name!r} escapes the target folder (..)")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise UnsafeArchive(f"zip entry {name!r} is a symbolic link; links are not allowed")
    if mode and stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise UnsafeArchive(f"zip entry {name!r} is not a regular file or folder")
    return path


def check_archive(
    zf: zipfile.ZipFile, max_bytes: int
) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    """Check every entry from the central directory before anything is written."""
    members = []
    seen: set[PurePosixPath] = set()
    total = 0
    for info in zf.infolist():
        path = _check_member(info)
        if path in seen:
            raise UnsafeArchive(f"zip entry {info.filename!r} appears twice")
        seen.add(path)
        total += info.file_size
        if total > max_bytes:
            raise UnsafeArchive(
                f"archive expands to more than the limit of {max_bytes} bytes "
                f"(reached at entry {info.filename!r})"
            )
        members.append((info, path))
    return members


def _copy_member(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, budget: int, max_bytes: int
) -> int:
    """Stream one entry to ``target``; returns bytes written. Stops past the remaining budget."""
    written = 0
    with zf.open(info) as src, open(target, "xb") as dst:
        while chunk := src.read(CHUNK):
            written += len(chunk)
            if written > info.file_size or written > budget:
                raise UnsafeArchive(
                    f"zip entry {info.filename!r} expands past its declared size or the "
                    f"limit of {max_bytes} bytes"
                )
            dst.write(chunk)
    mtime = time.mktime((*info.date_time, 0, 0, -1))
    os.utime(target, (mtime, mtime))
    return written


def extract_zip(
    zip_path: Path,
    dest: Path,
    *,
    max_bytes: int,
    marker: dict[str, Any] | None = None,
    progress: Progress = _noop,
    check_stop: CheckStop = _noop,
) -> Path:
    """Extract ``zip_path`` into ``dest`` (replacing it) safely; returns ``dest``.

    ``marker`` is written to ``dest/.source.json`` before the rename into place.
    Raises :class:`UnsafeArchive` for unsafe entries or size, :class:`SourceError` if the file
    is not a readable zip. Nothing is left at ``dest`` (nor half-extracted) on failure.
    """
    dest = Path(dest)
    with _build_into(dest, marker) as partial:
        partial.mkdir()
        try:
            zf = zipfile.ZipFile(zip_path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise SourceError(f"{zip_path.name} is not a readable zip archive: {exc}") from exc
        with zf:
            members = check_archive(zf, max_bytes)
            root = partial.resolve()
            total_written = 0
            progress(0, len(members))
            for i, (info, rel) in enumerate(members, start=1):
                target = partial.joinpath(*rel.parts)
                if not target.resolve().is_relative_to(root):  # defence in depth
                    raise UnsafeArchive(f"zip entry {info.filename!r} escapes the target folder")
                try:
                    if info.is_dir():
                        target.mkdir(parents=True, exist_ok=True)
                    else:
                        target.parent.mkdir(parents=True, exist_ok=True)
                        budget = max_bytes - total_written
                        total_written += _copy_member(zf, info, target, budget, max_bytes)
                except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error) as exc:
                    raise SourceError(
                        f"{zip_path.name}: zip entry {info.filename!r} is corrupt: {exc}"
                    ) from exc
                except OSError as exc:  # e.g. a file entry where a folder has to go
                    raise SourceError(
                        f"cannot extract zip entry {info.filename!r}: {exc.strerror or exc}"
                    ) from exc
                progress(i, len(members))
                if i % 256 == 0:
                    check_stop()
    return dest


@contextmanager
def _build_into(dest: Path, marker: dict[str, Any] | None) -> Iterator[Path]:
    """Yield a partial folder beside ``dest`` to fill; on success write ``marker`` into it and
    swap it in for ``dest``; on any failure delete it. ``dest`` is never half-built."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(dest)
    partial = dest.with_name(f".{dest.name}.partial-{os.getpid()}")
    try:
        yield partial
        if marker is not None:
            atomic_write_json(partial / MARKER_FILE, marker)
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
    return read_json(tree / MARKER_FILE) == marker


def obtain_tree(
    source: Source, name: str, settings: Settings, reporter: Reporter
) -> tuple[Path, dict[str, Any]]:
    """Make the source available as an extracted tree; returns (tree root, provenance facts).

    Provenance facts: ``source`` (URL, path or spec) and ``md5`` of the archive when one was
    used. Phases: ``download`` (url), ``extract`` (url, zip), ``generate`` (synthetic).
    """
    data_root = settings.data_root
    target = extracted_dir(data_root, name)
    if source.kind == "folder":
        folder = resolve_inside(data_root, source.path)
        if not folder.is_dir():
            raise SourceError(f"source folder {source.path!r} does not exist")
        origin = relative_to_root(data_root, folder)
        try:
            root = find_root(folder)
        except LayoutError as exc:
            raise LayoutError(f"{origin}: {exc}") from None
        return root, {"source": origin, "md5": None}

    if source.kind == "synthetic":
        from dataset_service.synthetic import SyntheticSpec

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
                processes=settings.writer_processes or None,
                progress=progress,
            )
        return find_root(target), {"source": description, "md5": None}

    if source.kind == "url":
        url = str(source.url)
        archive = downloads_dir(data_root) / download_file_name(url)
        reporter.phase("download", unit="bytes")
        md5 = download(
            url,
            archive,
            expected_md5=source.md5,
            max_bytes=settings.max_download_bytes,
            progress=reporter.progress,
            check_stop=reporter.check_stop,
        )
        origin = url
    else:  # zip
        archive = resolve_inside(data_root, source.path)
        if not archive.is_file():
            raise SourceError(f"source zip {source.path!r} does not exist")
        md5 = md5_file(archive)
        if source.md5 and md5 != source.md5:
            raise ChecksumMismatch(f"MD5 of {source.path} is {md5}, expected {source.md5}")
        origin = relative_to_root(data_root, archive)

    marker = {"kind": "archive", "md5": md5, "size": archive.stat().st_size}
    if not _reusable(target, marker):
        reporter.phase("extract", unit="files")
        extract_zip(
            archive,
            target,
            max_bytes=settings.max_extract_bytes,
            marker=marker,
            progress=reporter.progress,
            check_stop=reporter.check_stop,
        )
    try:
        root = find_root(target)
    except LayoutError as exc:  # name the archive the user gave, not our extraction folder
        raise LayoutError(f"{origin}: {exc}") from None
    return root, {"source": origin, "md5": md5}
