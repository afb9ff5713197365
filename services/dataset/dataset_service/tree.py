"""A tiny-imagenet-200 tree as the pipeline reads it: a folder on disk, or a zip read in place.

Both kinds answer the same few questions (:class:`Tree`: read a text file, list a folder's
files, say a file's size and version), with paths relative to the folder holding
``wnids.txt``, so :mod:`dataset_service.layout` validates either one and the writer reads
images from either one.

A zip is never extracted for the shards. Its central directory is read once and checked
(:func:`check_archive`: no absolute or ``..`` names, links, special
files, duplicates, or more uncompressed bytes than the limit), and every writer process reads
the members it needs at their offsets (:func:`read_member`: one ``pread`` and one inflate each,
checked against the declared size and CRC-32). That is what ``zipfile`` does per member too, but
``zipfile`` would parse the whole central directory again in every writer process (seconds for
the 120,000 entries of the real archive) and spend most of each small read in Python.
"""

from __future__ import annotations

import os
import re
import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple, Protocol

from dataset_service.errors import LayoutError, SourceError, UnsafeArchive
from dataset_service.gcpause import paused_gc
from dataset_service.layout_names import ROOT_DIR_NAME, WNIDS_FILE

_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, ..., name length, extra length
_LOCAL_SIGNATURE = b"PK\x03\x04"
_EXTRA_SLACK = 64
_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
_ENCRYPTED = 0x1
_U32 = 0xFFFFFFFF
_DRIVE = re.compile(r"^[A-Za-z]:")
#: Relative names made of plain parts (no "", ".", "..", backslash, colon or NUL).
_PLAIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*(?:/[A-Za-z0-9_][A-Za-z0-9._-]*)*/?")
#: Lines that are all plain names (one name per line).
_PLAIN_LINES = re.compile(rf"(?:{_PLAIN.pattern}\n)*{_PLAIN.pattern}")


class Tree(Protocol):
    """What the layout check and the writer need from a tree (paths relative to its root)."""

    #: How a writer process opens the tree again.
    ref: TreeRef
    #: Names the tree in messages (relative to the data root).
    label: str

    def read_text(self, rel: str) -> str:
        """UTF-8 text of a file; FileNotFoundError when there is none."""
        ...

    def is_dir(self, rel: str) -> bool: ...

    def files(self, rel: str) -> list[str]:
        """Sorted names of the regular, non-hidden files directly in folder ``rel``."""
        ...

    def info(self, rel: str) -> tuple[int, int, Member | None]:
        """(size, version, zip entry) of a file: the version is its mtime in ns on disk, its
        CRC-32 in a zip; the entry says where it lies in the archive (zip trees only)."""
        ...


@dataclass(frozen=True)
class TreeRef:
    """A tree as a writer process opens it: a folder, or a zip file."""

    kind: Literal["dir", "zip"]
    path: str


class Member(NamedTuple):
    """One entry of a zip, as its central directory records it."""

    name: str  # as stored (messages name it)
    flags: int
    method: int
    crc: int
    compressed: int
    size: int
    mode: int  # Unix mode bits (external attributes >> 16), 0 when not recorded
    offset: int  # of its local header

    @property
    def is_dir(self) -> bool:
        return self.name.endswith("/")

    @classmethod
    def of(cls, info: zipfile.ZipInfo) -> Member:
        return cls(
            info.filename,
            info.flag_bits,
            info.compress_type,
            info.CRC,
            info.compress_size,
            info.file_size,
            info.external_attr >> 16,
            info.header_offset,
        )


# ---------------------------------------------------------------------------- disk


class DiskTree:
    """A tree in a folder (extracted, generated, or given by the user)."""

    def __init__(self, root: Path, label: str | None = None) -> None:
        self.root = Path(root)
        self.label = label or self.root.name
        self.ref = TreeRef("dir", str(self.root))

    def read_text(self, rel: str) -> str:
        path = self.root / rel
        if not path.is_file():
            raise FileNotFoundError(rel)
        return path.read_text(encoding="utf-8")

    def is_dir(self, rel: str) -> bool:
        return (self.root / rel).is_dir()

    def files(self, rel: str) -> list[str]:
        folder = self.root / rel
        if not folder.is_dir():
            return []
        return sorted(
            e.name for e in os.scandir(folder) if e.is_file() and not e.name.startswith(".")
        )

    def info(self, rel: str) -> tuple[int, int, Member | None]:
        st = os.stat(self.root / rel)
        return st.st_size, st.st_mtime_ns, None

    def refuse_links(self) -> None:
        """Raise :class:`UnsafeArchive` naming the first symbolic link in the tree: a link could
        make a prepare read, or the reorganize step move, files outside the tree (as the zip
        path refuses links, so does a folder)."""
        pending = [self.root]
        while pending:
            folder = pending.pop()
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.is_symlink():
                        rel = Path(entry.path).relative_to(self.root)
                        raise UnsafeArchive(
                            f"{self.label}: {rel} is a symbolic link; links are not allowed in a "
                            "folder source (copy the files in instead)"
                        )
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(Path(entry.path))


# ---------------------------------------------------------------------------- zip


class ZipTree:
    """A tree inside a zip, from its checked central directory."""

    def __init__(
        self,
        path: Path,
        members: dict[str, Member],
        dirs: set[str],
        listing: dict[str, list[str]],
        label: str,
    ):
        self.path = Path(path)
        self.label = label
        self.ref = TreeRef("zip", str(self.path))
        self._members = members  # tree-relative path -> member
        self._dirs = dirs
        self._listing = listing  # folder -> names of its non-hidden files (sorted on demand)

    def read_text(self, rel: str) -> str:
        member = self._members.get(rel)
        if member is None:
            raise FileNotFoundError(rel)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            return read_member(fd, member, self.label).decode("utf-8")
        finally:
            os.close(fd)

    def is_dir(self, rel: str) -> bool:
        return rel in self._dirs

    def files(self, rel: str) -> list[str]:
        return sorted(self._listing.get(rel, ()))

    def info(self, rel: str) -> tuple[int, int, Member | None]:
        member = self._members[rel]
        return member.size, member.crc, member


_EOCD = struct.Struct("<4s4H2LH")
_EOCD_SIGNATURE = b"PK\x05\x06"
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_LOCATOR_SIGNATURE = b"PK\x06\x07"
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")
_ZIP64_EOCD_SIGNATURE = b"PK\x06\x06"
_CENTRAL = struct.Struct("<4s6H3L5H2L")
_CENTRAL_SIGNATURE = b"PK\x01\x02"
_UTF8 = 0x800
_MAX_COMMENT = 0xFFFF


def _zip64_extra(extra: bytes, size: int, compressed: int, offset: int) -> tuple[int, int, int]:
    """Sizes and offset that do not fit 32 bits, from the zip64 extra field (id 0x0001)."""
    pos = 0
    while pos + 4 <= len(extra):
        kind, length = struct.unpack_from("<HH", extra, pos)
        if kind == 1:
            values = iter(struct.unpack_from(f"<{length // 8}Q", extra, pos + 4))
            if size == _U32:
                size = next(values)
            if compressed == _U32:
                compressed = next(values)
            if offset == _U32:
                offset = next(values)
            break
        pos += 4 + length
    return size, compressed, offset


def read_central_directory(path: Path) -> list[Member]:
    """Every entry of the zip at ``path`` from its central directory (zip64 included), in one
    read and one pass of ``struct.unpack_from``. ``zipfile.ZipFile`` reads the same records but
    builds a ``ZipInfo`` per entry, several times slower for the archive's 120,000 entries.
    Raises :class:`zipfile.BadZipFile` for what is not a zip."""
    with open(path, "rb") as f:
        end = f.seek(0, os.SEEK_END)
        tail_start = max(0, end - _EOCD.size - _MAX_COMMENT)
        f.seek(tail_start)
        tail = f.read()
        at = tail.rfind(_EOCD_SIGNATURE)
        if at < 0 or at + _EOCD.size > len(tail):
            raise zipfile.BadZipFile("File is not a zip file")
        _, _, _, _, count, cd_size, cd_offset, _ = _EOCD.unpack_from(tail, at)
        eocd_pos = tail_start + at
        directory_end = eocd_pos
        locator = at - _ZIP64_LOCATOR.size
        if locator >= 0 and tail[locator : locator + 4] == _ZIP64_LOCATOR_SIGNATURE:
            _, _, z64_pos, _ = _ZIP64_LOCATOR.unpack_from(tail, locator)
            f.seek(z64_pos)
            record = f.read(_ZIP64_EOCD.size)
            if len(record) != _ZIP64_EOCD.size or record[:4] != _ZIP64_EOCD_SIGNATURE:
                raise zipfile.BadZipFile("corrupt zip64 end of central directory record")
            *_, count, cd_size, cd_offset = _ZIP64_EOCD.unpack(record)
            directory_end = z64_pos
        concat = directory_end - cd_size - cd_offset  # bytes prepended to the archive, if any
        if concat < 0:
            raise zipfile.BadZipFile("the central directory lies outside the file")
        f.seek(cd_offset + concat)
        data = f.read(cd_size)
    if len(data) != cd_size:
        raise zipfile.BadZipFile("truncated central directory")
    members: list[Member] = []
    pos, unpack, step = 0, _CENTRAL.unpack_from, _CENTRAL.size
    for _ in range(count):
        if data[pos : pos + 4] != _CENTRAL_SIGNATURE:
            raise zipfile.BadZipFile("bad magic number for a central directory entry")
        (_, _, _, flags, method, _, _, crc, compressed, size, name_len, extra_len, comment_len,
         _, _, attrs, offset) = unpack(data, pos)  # fmt: skip
        pos += step
        raw_name = data[pos : pos + name_len]
        if raw_name.isascii():  # the same in UTF-8 and cp437
            name = raw_name.decode("ascii")
        else:
            name = raw_name.decode("utf-8" if flags & _UTF8 else "cp437")
        if _U32 in (size, compressed, offset):
            extra = data[pos + name_len : pos + name_len + extra_len]
            size, compressed, offset = _zip64_extra(extra, size, compressed, offset)
        pos += name_len + extra_len + comment_len
        members.append(
            Member(name, flags, method, crc, compressed, size, attrs >> 16, offset + concat)
        )
    return members


def _check_member(member: Member) -> str:
    """The entry's normalized relative path (``a/b/c``); raises :class:`UnsafeArchive` for
    anything unsafe. Plain string work: this runs once per entry (120,000 in the archive)."""
    name = member.name
    # The common case first: plain parts, nothing to normalize, nothing unsafe.
    path = name.rstrip("/") if _PLAIN.fullmatch(name) else _normalized(name)
    mode = member.mode
    if mode:
        if stat.S_ISLNK(mode):
            raise UnsafeArchive(f"zip entry {name!r} is a symbolic link; links are not allowed")
        if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise UnsafeArchive(f"zip entry {name!r} is not a regular file or folder")
    return path


def _normalized(name: str) -> str:
    if not name or "\x00" in name:
        raise UnsafeArchive(f"zip entry {name!r} has an empty or invalid name")
    posix = name.replace("\\", "/")
    if posix[0] == "/" or _DRIVE.match(posix):
        raise UnsafeArchive(f"zip entry {name!r} is an absolute path")
    parts = [p for p in posix.split("/") if p and p != "."]
    if ".." in parts:
        raise UnsafeArchive(f"zip entry {name!r} escapes the target folder (..)")
    if not parts:
        raise UnsafeArchive(f"zip entry {name!r} has an empty or invalid name")
    return "/".join(parts)


def check_archive(members: list[Member], max_bytes: int) -> list[str]:
    """Check every entry from the central directory before anything is read or written;
    returns each entry's normalized relative path, in order.

    An archive whose names are all plain, without duplicates, links, special files or too many
    bytes is checked in bulk (a few passes in C over all names at once); any other one entry by
    entry, which names the first entry at fault.
    """
    names = [m.name for m in members]
    blob = "\n".join(names)
    plain = blob.count("\n") == len(names) - 1 and _PLAIN_LINES.fullmatch(blob) is not None
    if plain and sum(m.size for m in members) <= max_bytes:
        modes = {m.mode for m in members}
        if all(not mode or stat.S_ISREG(mode) or stat.S_ISDIR(mode) for mode in modes):
            paths = [n[:-1] if n[-1] == "/" else n for n in names]
            if len(set(paths)) == len(paths):
                return paths
    return _check_one_by_one(members, max_bytes)


def _check_one_by_one(members: list[Member], max_bytes: int) -> list[str]:
    paths: list[str] = []
    seen: set[str] = set()
    total = 0
    for member in members:
        path = _check_member(member)
        if path in seen:
            raise UnsafeArchive(f"zip entry {member.name!r} appears twice")
        seen.add(path)
        total += member.size
        if total > max_bytes:
            raise UnsafeArchive(
                f"archive expands to more than the limit of {max_bytes} bytes "
                f"(reached at entry {member.name!r})"
            )
        paths.append(path)
    return paths


def find_prefix(paths: set[str], tops: set[str]) -> str:
    """The folder of the archive holding ``wnids.txt`` ("" or ``"<folder>/"``): the top,
    ``tiny-imagenet-200/``, or the single top-level folder; :class:`LayoutError` otherwise.
    ``tops``: the top-level folders."""
    for prefix in ("", f"{ROOT_DIR_NAME}/"):
        if f"{prefix}{WNIDS_FILE}" in paths:
            return prefix
    tops = {d for d in tops if not d.startswith(".")}
    if len(tops) == 1 and f"{next(iter(tops))}/{WNIDS_FILE}" in paths:
        return f"{next(iter(tops))}/"
    raise LayoutError(
        f"{WNIDS_FILE} is missing: neither at the top nor in a {ROOT_DIR_NAME}/ (or single) folder"
    )


def open_zip_tree(path: Path, *, max_bytes: int, label: str) -> ZipTree:
    """Read and check the central directory of the zip at ``path``; ``label`` names it in
    messages. Raises :class:`SourceError` (not a zip, encrypted or unsupported entries),
    :class:`UnsafeArchive`, or :class:`LayoutError` (no ``wnids.txt``)."""
    with paused_gc():
        return _open_zip_tree(path, max_bytes, label)


def checked_members(path: Path, max_bytes: int, label: str) -> list[tuple[Member, str]]:
    """Every entry of the zip at ``path`` with its normalized path, all checked
    (:func:`check_archive`, encryption, compression method); ``label`` names the archive."""
    try:
        members = read_central_directory(path)
    except (zipfile.BadZipFile, OSError, struct.error, UnicodeDecodeError) as exc:
        raise SourceError(f"{label} is not a readable zip archive: {exc}") from exc
    for member in members:
        if member.name[-1] == "/":
            continue
        if member.flags & _ENCRYPTED:
            raise SourceError(f"{label}: zip entry {member.name!r} is encrypted")
        if member.method not in _METHODS:
            raise SourceError(
                f"{label}: zip entry {member.name!r} uses compression method "
                f"{member.method}; only stored and deflated entries are supported"
            )
    return list(zip(members, check_archive(members, max_bytes), strict=True))


def _open_zip_tree(path: Path, max_bytes: int, label: str) -> ZipTree:
    checked = checked_members(path, max_bytes, label)
    paths = [p for _, p in checked]
    tops = {p.partition("/")[0] for p in paths if "/" in p}
    prefix = find_prefix(set(paths), tops)
    n = len(prefix)
    files: dict[str, Member] = {}
    listing: dict[str, list[str]] = {}
    dirs: set[str] = {""}
    for member, posix in checked:
        if not posix.startswith(prefix):
            continue
        rel = posix[n:]
        if member.name[-1] == "/":
            dirs.add(rel)
            continue
        files[rel] = member
        parent, _, name = rel.rpartition("/")
        if parent not in listing:
            listing[parent] = []
            while parent and parent not in dirs:  # every folder above a file exists
                dirs.add(parent)
                parent = parent.rpartition("/")[0]
        if name[0] != ".":
            listing[rel.rpartition("/")[0]].append(name)
    return ZipTree(path, files, dirs, listing, label)


def read_member(fd: int, member: Member, label: str) -> bytes:
    """The bytes of one zip member, read at its offset from the open file ``fd``.

    Raises :class:`SourceError` naming the archive (``label``) and the entry when the local
    header is not where the central directory says, the data is corrupt, or its size or CRC-32
    is not the declared one (so a lying header cannot expand past its declared size).
    """
    try:
        # One read for the header and the data: the local name is as long as the central one,
        # and a local extra field rarely is longer than the slack.
        guess = _LOCAL_HEADER.size + len(member.name.encode()) + _EXTRA_SLACK + member.compressed
        block = os.pread(fd, guess, member.offset)
        signature, name_len, extra_len = _LOCAL_HEADER.unpack_from(block)
        if signature != _LOCAL_SIGNATURE:
            raise SourceError(f"no local header at offset {member.offset}")
        start = _LOCAL_HEADER.size + name_len + extra_len
        raw = block[start : start + member.compressed]
        if len(raw) < member.compressed and len(block) == guess:  # a longer extra field
            raw = os.pread(fd, member.compressed, member.offset + start)
        if len(raw) != member.compressed:
            raise SourceError("the archive ends inside the entry")
        if member.method == zipfile.ZIP_DEFLATED:
            inflater = zlib.decompressobj(-zlib.MAX_WBITS)
            data = inflater.decompress(raw, member.size + 1)
            if len(data) > member.size:
                raise UnsafeArchive("it expands past its declared size")
        else:
            data = raw
        if len(data) != member.size or zlib.crc32(data) != member.crc:
            raise SourceError("its size or CRC-32 is not the declared one")
    except (SourceError, struct.error, zlib.error, OSError) as exc:
        kind = UnsafeArchive if isinstance(exc, UnsafeArchive) else SourceError
        reason = exc.message if isinstance(exc, SourceError) else f"{type(exc).__name__}: {exc}"
        raise kind(f"{label}: zip entry {member.name!r} is corrupt: {reason}") from None
    return data
