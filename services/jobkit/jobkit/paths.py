"""The one check that a path a client named stays inside the data root."""

from __future__ import annotations

from pathlib import Path


class OutsideRoot(ValueError):
    """A client-named path is empty, or resolves outside the root (``..``, absolute, a link)."""


def resolve_inside(root: Path, client_path: str | Path) -> Path:
    """``client_path`` (relative to ``root``, or absolute) resolved, links followed.

    Raises :class:`OutsideRoot` unless the result lies inside the resolved ``root``; the
    message repeats what the client gave, never a server path. The path need not exist.
    """
    resolved_root = Path(root).resolve()
    text = str(client_path)
    if not text or "\x00" in text:
        raise OutsideRoot(f"path {text!r} is empty or invalid")
    given = Path(text)
    resolved = (given if given.is_absolute() else resolved_root / given).resolve()
    if not resolved.is_relative_to(resolved_root):
        raise OutsideRoot(
            f"path {text!r} is outside the data root (after resolving '..' and links)"
        )
    return resolved
