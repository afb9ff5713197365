"""Crash-safe writes for job outputs: a reader (or a resume after SIGKILL) never sees half a file.

Each write goes to a temporary file beside the target, is fsynced, then renamed over it. The
files get the mode an ordinary ``open`` would give them (0666 less the umask: 0644 by default),
so people and containers under other uids can read the shared volume.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


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
