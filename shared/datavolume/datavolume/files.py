"""Files on the volume: crash-safe writes, JSON reads, directory fsync, checksums.

Every write goes to a temporary file beside the target, is fsynced, then renamed over it: a reader
(or a resume after SIGKILL) never sees half a file. The files get the mode an ordinary ``open``
would give them (0666 less the umask: 0644 by default), so people and containers under other
uids can read the shared volume.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHUNK = 1 << 20


#: The names :func:`temp_path` gives: ``.<stem>.<12 hex>.tmp<suffix>``.
TEMP_NAME = re.compile(r"^\..+\.[0-9a-f]{12}\.tmp")


def remove_temporaries(folder: Path) -> list[str]:
    """Delete the temporary files :func:`temp_path` made in ``folder`` (left by a process
    killed mid-write); returns their names."""
    removed = []
    for path in Path(folder).glob(".*.tmp*"):
        if TEMP_NAME.match(path.name) and path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed


def temp_path(path: Path, suffix: str = "") -> Path:
    """A new empty temporary file in ``path``'s folder (hidden, ``.tmp`` + ``suffix``).

    Unlike ``tempfile.mkstemp`` (always 0600), its mode honours the umask.
    """
    path = Path(path)
    while True:
        tmp = path.parent / f".{path.stem}.{secrets.token_hex(6)}.tmp{suffix}"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp


@contextmanager
def replacing(path: Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temp file beside ``path`` (see :func:`temp_path`) to write; renamed over
    ``path`` when the block ends, deleted if it raises. Its parent folder is created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path, suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to a temp file beside ``path``, fsync, then rename over ``path``."""
    with replacing(path) as tmp, tmp.open("w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_json(path: Path, value: Any) -> None:
    atomic_write_text(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


def atomic_copy(source: Path, dest: Path) -> None:
    """Copy ``source`` to ``dest`` through a temp file and a rename."""
    with replacing(dest, Path(dest).suffix) as tmp:
        shutil.copyfile(source, tmp)


def read_json(path: Path, *, tolerate_corrupt: bool = False) -> Any | None:
    """The JSON in ``path``; None when the file does not exist.

    A file that exists but does not parse raises ``ValueError``, unless ``tolerate_corrupt``:
    then it is None too (for caches and markers that are rebuilt when unreadable; never for a
    record a resume depends on, where "unreadable" must not silently mean "absent").
    """
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return None
    except OSError:
        if tolerate_corrupt:
            return None
        raise
    try:
        return json.loads(text)
    except ValueError as exc:
        if tolerate_corrupt:
            return None
        raise ValueError(f"{Path(path).name} is not valid JSON: {exc}") from None


def fsync_dir(path: Path) -> None:
    """Make renames and creations inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()
