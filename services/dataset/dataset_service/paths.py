"""Where things live on the shared volume, and the check that client paths stay inside it.

<data_root>/
  raw/downloads/<file>          archives fetched by URL
  raw/extracted/<name>/         generated (synthetic) trees, one per dataset name
  raw/extracted/archive-<md5>/  an archive extracted as an ImageFolder tree (on request only)
  datasets/<name>/              shards and metadata (shard_format.schema.dataset_dir): a link to
                                datasets/.versions/<name>@<time>/ (see dataset_service.publish)
  state/                        job database, job logs, locks (settings.state_dir)
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlparse

from dataset_service.errors import PathOutsideDataRoot
from jobkit import paths

RAW_DIR = "raw"
DOWNLOADS_DIR = "downloads"
EXTRACTED_DIR = "extracted"

_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


def raw_root(data_root: Path) -> Path:
    return Path(data_root) / RAW_DIR


def downloads_dir(data_root: Path) -> Path:
    return raw_root(data_root) / DOWNLOADS_DIR


def extracted_root(data_root: Path) -> Path:
    return raw_root(data_root) / EXTRACTED_DIR


def extracted_dir(data_root: Path, name: str) -> Path:
    """The generated source tree of dataset ``name``."""
    return extracted_root(data_root) / name


def archive_tree_dir(data_root: Path, md5: str) -> Path:
    """The extracted, reorganized tree of the archive with this MD5 (shared by dataset names)."""
    return extracted_root(data_root) / f"archive-{md5}"


def download_file_name(url: str) -> str:
    """A safe local file name for ``url``: its last path segment, odd characters replaced."""
    last = unquote(urlparse(url).path.rsplit("/", 1)[-1])
    safe = _UNSAFE_CHARS.sub("_", last).lstrip(".")
    return safe or "download"


def resolve_inside(data_root: Path, client_path: str | Path) -> Path:
    """:func:`jobkit.paths.resolve_inside`, failing as :class:`PathOutsideDataRoot`."""
    try:
        return paths.resolve_inside(data_root, client_path)
    except paths.OutsideRoot as exc:
        raise PathOutsideDataRoot(str(exc)) from None


def relative_to_root(data_root: Path, path: Path) -> str:
    """``path`` as a string relative to the data root (for messages and results)."""
    for root in (Path(data_root), Path(data_root).resolve()):
        if Path(path).is_relative_to(root):
            return str(Path(path).relative_to(root))
    return str(path)
