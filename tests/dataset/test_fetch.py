"""The url source reaches only what it may: non-public addresses refused after resolving, on
every redirect hop, the connection pinned to the address checked; a lab mirror allowed by name."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from dataset_service.fetch import UrlPolicy, UrlRefused, _not_public, open_stream


@pytest.mark.parametrize(
    ("address", "kind"),
    [("127.0.0.1", "loopback"), ("::1", "loopback"), ("10.1.2.3", "private"),
     ("192.168.0.9", "private"), ("169.254.169.254", "link-local"), ("fe80::1", "link-local"),
     ("224.0.0.1", "multicast"), ("0.0.0.0", "unspecified"), ("::ffff:127.0.0.1", "loopback"),
     ("240.0.0.1", "reserved"), ("8.8.8.8", None), ("2606:4700::1111", None)],
)  # fmt: skip
def test_what_is_not_public(address, kind):
    assert _not_public(address) == kind


@contextmanager
def redirecting_server(target: str) -> Iterator[str]:
    """A loopback server: /data answers "payload"; /go redirects to ``target``."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/go":
                self.send_response(302)
                self.send_header("Location", target)
                self.end_headers()
                return
            body = f"payload for {self.headers['Host']}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"{server.server_address[1]}"
    finally:
        server.shutdown()


def _get(url: str, policy: UrlPolicy) -> str:
    with open_stream(url, policy, timeout_s=5) as response:
        return response.read().decode()


def test_loopback_is_refused_unless_allowed():
    with redirecting_server("/data") as port:
        with pytest.raises(UrlRefused, match=r"'127\.0\.0\.1' resolves to a loopback address"):
            _get(f"http://127.0.0.1:{port}/data", UrlPolicy())
        with pytest.raises(UrlRefused, match="'localhost' resolves to a loopback"):
            _get(f"http://localhost:{port}/data", UrlPolicy())
        # allowed by name: connected to the address checked, the name in the Host header
        assert _get(f"http://localhost:{port}/data", UrlPolicy.of("localhost")) == (
            f"payload for localhost:{port}"
        )


def test_every_redirect_hop_is_checked():
    refused = pytest.raises(UrlRefused, match=r"'127\.0\.0\.1' resolves to a loopback")
    with redirecting_server("http://127.0.0.1:1/secret") as port, refused:
        # localhost is allowed (a mirror), the hop to 127.0.0.1 is not
        _get(f"http://localhost:{port}/go", UrlPolicy.of("localhost"))
    with redirecting_server("/data") as port:
        assert _get(f"http://localhost:{port}/go", UrlPolicy.of("localhost")).startswith("payload")


def test_a_redirect_loop_ends():
    with redirecting_server("/go") as port, pytest.raises(Exception, match="redirects"):
        _get(f"http://localhost:{port}/go", UrlPolicy.of("localhost"))


def test_only_http_and_https():
    with pytest.raises(UrlRefused, match="http and https only"):
        UrlPolicy().pin(httpx.URL("ftp://example.com/x.zip"))


def test_the_settings_list_of_hosts():
    assert UrlPolicy.of(" Mirror.Lab , 10.0.0.5,,") == UrlPolicy(
        frozenset({"mirror.lab", "10.0.0.5"})
    )
