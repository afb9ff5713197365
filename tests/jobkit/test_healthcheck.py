import http.server
import threading

import pytest

from jobkit.healthcheck import main


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def test_healthy_service_exits_zero(server, monkeypatch):
    monkeypatch.setenv("SOME_PORT", str(server))
    assert main(["SOME_PORT"]) == 0


def test_nothing_listening_exits_one(server, monkeypatch):
    monkeypatch.setenv("SOME_PORT", "1")  # port 1: nothing listens there
    assert main(["SOME_PORT"]) == 1


def test_missing_variable_or_argument_exits_two(monkeypatch):
    monkeypatch.delenv("SOME_PORT", raising=False)
    assert main(["SOME_PORT"]) == 2
    assert main([]) == 2
