"""Errors a prepare raises for reasons a client can read and act on.

Each carries one readable message (naming the file, line or field at fault). The job function
turns them into ``JobFailed(message, type)``; the API maps :class:`PathOutsideDataRoot` to 422.
They pickle with their message, so they cross the writer's process pool intact.
"""

from __future__ import annotations


class PrepareError(Exception):
    """Base class: the input (archive, layout, image, path) is not usable as given."""

    #: ``JobError.type`` recorded when this ends a job.
    type = "invalid_input"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):  # keep subclasses picklable whatever their __init__ takes
        return _rebuild, (type(self), self.message, dict(self.__dict__))


def _rebuild(cls: type[PrepareError], message: str, state: dict) -> PrepareError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class PathOutsideDataRoot(PrepareError):
    """A client-named path resolves outside the data root (``..``, absolute, symlink)."""


class SourceError(PrepareError):
    """The source could not be fetched or read (HTTP error, missing file, bad zip)."""

    type = "source_error"


class ChecksumMismatch(SourceError):
    """The archive's MD5 is not the expected one."""


class UnsafeArchive(SourceError):
    """The archive has entries that escape the target, links, or expands past the limit."""


class LayoutError(PrepareError):
    """A file or folder of the tiny-imagenet-200 layout is missing or malformed."""


class ReorganizeError(PrepareError):
    """Moving the val images into per-class folders cannot proceed safely."""


class BadImage(PrepareError):
    """An image cannot be decoded (truncated, corrupt, wrong size)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class ShardCountError(PrepareError):
    """A requested shard count cannot be honoured (more shards than images)."""
