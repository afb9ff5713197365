"""How the API process and the predictor process talk: one request and one answer per
connection on a Unix socket (standard library only: the API process imports this).

A message is a fixed 8-byte prefix (the lengths of its JSON header and of its payload, unsigned
32-bit big-endian), the JSON header (an object), then the payload's bytes (a request's images,
one after the other, their sizes in the header; empty otherwise). The socket lives in a private
folder (mode 0700), so only this user's processes reach it.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from pathlib import Path
from typing import Any

_PREFIX = struct.Struct("!II")
#: Largest header accepted (a request's file names; an answer's classes).
MAX_HEADER = 16 * 2**20
#: Largest payload accepted (the service's own limit on a request body is at most 256 MiB).
MAX_PAYLOAD = 512 * 2**20


class WireError(ConnectionError):
    """The other side closed the connection or sent something that is not a message."""


def encode(header: dict[str, Any], payload: bytes = b"") -> tuple[bytes, bytes]:
    """A message's prefix and header, then its payload."""
    data = json.dumps(header).encode()
    return _PREFIX.pack(len(data), len(payload)) + data, payload


def send(connection: socket.socket, header: dict[str, Any], payload: bytes = b"") -> None:
    for part in encode(header, payload):
        if part:
            connection.sendall(part)


def receive(connection: socket.socket) -> tuple[dict[str, Any], bytes]:
    """The next message's header and payload; :class:`WireError` if the connection ends first
    or the message is malformed."""
    header_size, payload_size = _sizes(_read(connection, _PREFIX.size))
    header = _header(_read(connection, header_size))
    return header, _read(connection, payload_size)


def _sizes(prefix: bytes) -> tuple[int, int]:
    header_size, payload_size = _PREFIX.unpack(prefix)
    if header_size > MAX_HEADER or payload_size > MAX_PAYLOAD:
        raise WireError(f"a message of {header_size} + {payload_size} bytes is too large")
    return header_size, payload_size


def _header(data: bytes) -> dict[str, Any]:
    try:
        header = json.loads(data)
    except ValueError:
        raise WireError("a message header is not JSON") from None
    if not isinstance(header, dict):
        raise WireError("a message header is not a JSON object")
    return header


def ask(
    path: Path, header: dict[str, Any], payload: bytes = b"", timeout_s: float | None = None
) -> tuple[dict[str, Any], bytes]:
    """Send one request to the server listening on ``path``, return its answer. ``OSError``
    (``ConnectionError``, ``TimeoutError``, ``FileNotFoundError``) when it cannot."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(timeout_s)
        connection.connect(str(path))
        send(connection, header, payload)
        return receive(connection)


async def ask_async(
    path: Path, header: dict[str, Any], payload: bytes = b"", timeout_s: float | None = None
) -> tuple[dict[str, Any], bytes]:
    """:func:`ask` on the event loop (the API's route waits for the predictor without holding
    a thread); ``TimeoutError`` after ``timeout_s``, ``OSError`` as :func:`ask`."""
    async with asyncio.timeout(timeout_s):
        reader, writer = await asyncio.open_unix_connection(str(path))
        try:
            for part in encode(header, payload):
                writer.write(part)
            await writer.drain()
            try:
                header_size, payload_size = _sizes(await reader.readexactly(_PREFIX.size))
                answer = _header(await reader.readexactly(header_size))
                return answer, await reader.readexactly(payload_size)
            except asyncio.IncompleteReadError:
                raise WireError("the connection closed in the middle of a message") from None
        finally:
            writer.close()


def _read(connection: socket.socket, size: int) -> bytes:
    buffer = bytearray(size)
    view, done = memoryview(buffer), 0
    while done < size:
        got = connection.recv_into(view[done:])
        if got == 0:
            raise WireError("the connection closed in the middle of a message")
        done += got
    return bytes(buffer)
