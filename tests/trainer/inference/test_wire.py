"""Messages between the API process and the predictor: a JSON header and a payload, read back
whole; a connection that ends mid-message or a message too large is an error, not a hang."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading

import pytest

from trainer_service.inference import wire


def test_a_message_arrives_whole():
    left, right = socket.socketpair()
    with left, right:
        payload = bytes(range(256)) * 4096  # more than one socket buffer
        sender = threading.Thread(target=wire.send, args=(left, {"op": "x", "n": [1]}, payload))
        sender.start()
        assert wire.receive(right) == ({"op": "x", "n": [1]}, payload)
        sender.join()
        wire.send(left, {"empty": True})
        assert wire.receive(right) == ({"empty": True}, b"")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "closed in the middle"),
        (struct.pack("!II", 10, 0) + b"{}", "closed in the middle"),
        (struct.pack("!II", 2, 0) + b"[]", "not a JSON object"),
        (struct.pack("!II", 3, 0) + b"{{{", "not JSON"),
        (struct.pack("!II", wire.MAX_HEADER + 1, 0), "too large"),
    ],
    ids=["nothing", "cut-short", "not-an-object", "not-json", "too-large"],
)
def test_a_bad_message_is_an_error(raw, reason):
    left, right = socket.socketpair()
    with left, right:
        left.sendall(raw)
        left.shutdown(socket.SHUT_WR)
        with pytest.raises(wire.WireError, match=reason):
            wire.receive(right)


def test_ask_talks_to_a_unix_socket_server(tmp_path):
    path = tmp_path / "socket"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        server.listen()

        def answer() -> None:
            connection, _ = server.accept()
            with connection:
                header, payload = wire.receive(connection)
                wire.send(connection, {"got": header["op"], "bytes": len(payload)})

        thread = threading.Thread(target=answer)
        thread.start()
        assert wire.ask(path, {"op": "hello"}, b"abc", timeout_s=10) == (
            {"got": "hello", "bytes": 3},
            b"",
        )
        thread.join()
    with pytest.raises(FileNotFoundError):
        wire.ask(tmp_path / "nobody", {"op": "hello"})


def test_ask_async_gets_the_answer_and_sees_a_server_that_dies(tmp_path):
    path = tmp_path / "socket"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        server.listen()

        def serve(answer: bool) -> None:
            connection, _ = server.accept()
            with connection:
                header, payload = wire.receive(connection)
                if answer:
                    wire.send(connection, {"got": header["op"]}, payload[::-1])

        for answer in (True, False):
            thread = threading.Thread(target=serve, args=(answer,))
            thread.start()
            ask = wire.ask_async(path, {"op": "hello"}, b"abc", timeout_s=10)
            if answer:
                assert asyncio.run(ask) == ({"got": "hello"}, b"cba")
            else:  # it read the request and closed without an answer
                with pytest.raises(wire.WireError, match="closed in the middle"):
                    asyncio.run(ask)
            thread.join()
        with pytest.raises(TimeoutError):  # connected, never answered
            asyncio.run(wire.ask_async(path, {"op": "hello"}, timeout_s=0.2))
