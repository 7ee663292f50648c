"""A real HTTP server on loopback standing in for Vapi, for tests that run the proxy over a socket
(tests/test_end_to_end.py, tests/browser/). conftest.py makes `standin_vapi` a fixture."""

import json
import threading
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from calls.vapi import reset_vapi_client, use_vapi_transport

CALL = json.loads((Path(__file__).parent / "fixtures" / "vapi_call_web_201.json").read_text())
# What the proxy gives the client for CALL: what the SDK reads, never the config or monitor URLs.
CLIENT_VIEW = {
    "id": "3f1c9a52-6a7e-4c1b-9d1e-0c2f5e8b7a11",
    "webCallUrl": "https://vapi.daily.co/Zx8kP2mQ7rT1",
    "status": "queued",
    "type": "webCall",
    "createdAt": "2026-12-03T10:15:00.000Z",
    "artifactPlan": {"recordingEnabled": True, "videoRecordingEnabled": False},
    "transport": {"provider": "daily", "assistantVideoEnabled": False, "callUrl": "https://vapi.daily.co/Zx8kP2mQ7rT1"},
    "assistant": {"voice": {"provider": "vapi"}},
}


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def header_dict(self) -> dict[str, str]:
        names = [name for name, _ in self.headers]
        assert len(names) == len(set(names)), f"repeated headers: {names}"
        return dict(self.headers)


class StandInVapi(ThreadingHTTPServer):
    """Answers every POST with `answer`, after `delay` seconds, and a GET with what `reply_to_get`
    set for its path (404 otherwise); records what it received."""

    daemon_threads = False  # so server_close() joins every handler thread

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _StandInHandler)
        self.received: list[Received] = []
        self.delay = 0.0
        self.released = threading.Event()
        self.get_answers: dict[str, tuple[int, dict, bytes]] = {}
        self.reply(HTTPStatus.CREATED, json.dumps(CALL).encode())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"

    def reply(self, status: int, content: bytes, headers: dict | None = None):
        self.answer = (status, {"Content-Type": "application/json; charset=utf-8", **(headers or {})}, content)

    def reply_to_get(self, path: str, status: int, content: bytes):
        """What GET `path` (without its query string, e.g. "/assistant") answers."""
        self.get_answers[path] = (status, {"Content-Type": "application/json; charset=utf-8"}, content)


class _StandInHandler(BaseHTTPRequestHandler):
    server: StandInVapi

    def do_POST(self):
        self._record()
        if self.server.delay and self.server.released.wait(self.server.delay):
            return  # the test is over and the proxy gave up long ago
        self._answer(*self.server.answer)

    def do_GET(self):
        self._record()
        not_found = (HTTPStatus.NOT_FOUND, {"Content-Type": "application/json"}, b'{"message": "Not Found"}')
        self._answer(*self.server.get_answers.get(self.path.split("?", 1)[0], not_found))

    def _record(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        headers = [(name.lower(), value) for name, value in self.headers.items()]
        self.server.received.append(Received(self.command, self.path, headers, body))

    def _answer(self, status, headers, content):
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    def log_message(self, format, *args):
        pass


@pytest.fixture
def standin_vapi(settings, fake_vapi):
    """A real HTTP server on loopback standing in for Vapi; the proxy's VAPI_BASE_URL points at it."""
    server = StandInVapi()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="stand-in-vapi")
    thread.start()
    settings.VAPI_BASE_URL = server.url
    use_vapi_transport(None)
    yield server
    server.released.set()
    reset_vapi_client()
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)
    assert not thread.is_alive()
