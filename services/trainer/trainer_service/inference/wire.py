"""How the API process and the predictor process talk: one request and one answer per
connection on a Unix socket (standard library only: the API process imports this).

A message is a fixed 8-byte prefix (the lengths of its JSON header and of its payload, unsigned
32-bit big-endian), the JSON header (an object), then the payload's bytes (a request's images,
one after the other, their sizes in the header; empty otherwise). The socket lives in a private
folder (mode 0700), so only this user's processes reach it.
"""

from __future__ import annotations

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


def send(connection: socket.socket, header: dict[str, Any], payload: bytes = b"") -> None:
    data = json.dumps(header).encode()
    connection.sendall(_PREFIX.pack(len(data), len(payload)) + data)
    if payload:
        connection.sendall(payload)


def receive(connection: socket.socket) -> tuple[dict[str, Any], bytes]:
    """The next message's header and payload; :class:`WireError` if the connection ends first
    or the message is malformed."""
    header_size, payload_size = _PREFIX.unpack(_read(connection, _PREFIX.size))
    if header_size > MAX_HEADER or payload_size > MAX_PAYLOAD:
        raise WireError(f"a message of {header_size} + {payload_size} bytes is too large")
    try:
        header = json.loads(_read(connection, header_size))
    except ValueError:
        raise WireError("a message header is not JSON") from None
    if not isinstance(header, dict):
        raise WireError("a message header is not a JSON object")
    return header, _read(connection, payload_size)


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


def _read(connection: socket.socket, size: int) -> bytes:
    buffer = bytearray(size)
    view, done = memoryview(buffer), 0
    while done < size:
        got = connection.recv_into(view[done:])
        if got == 0:
            raise WireError("the connection closed in the middle of a message")
        done += got
    return bytes(buffer)
