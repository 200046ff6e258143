"""A real HTTP server on 127.0.0.1 for source tests, answering what a test tells it to."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

FIXTURES = Path(__file__).parent


def load_fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: Any = None  # JSON-encoded unless it is str or bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Seen:
    path: str
    params: dict[str, str]


Responder = Callable[[Seen], Reply]


def scripted(*replies: Reply) -> Responder:
    """Answer with `replies` in order, repeating the last one."""
    queue = list(replies)
    lock = threading.Lock()

    def respond(_: Seen) -> Reply:
        with lock:
            return queue.pop(0) if len(queue) > 1 else queue[0]

    return respond


class LocalServer:
    def __init__(self, httpd: ThreadingHTTPServer) -> None:
        self._httpd = httpd
        self.requests: list[Seen] = []
        self.responder: Responder = scripted(Reply(404, {"error": "no responder set"}))

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"


@contextmanager
def running_server() -> Iterator[LocalServer]:
    holder: dict[str, LocalServer] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            server = holder["server"]
            parts = urlsplit(self.path)
            seen = Seen(parts.path, {k: v[-1] for k, v in parse_qs(parts.query).items()})
            server.requests.append(seen)
            reply = server.responder(seen)
            body = reply.body
            if isinstance(body, str):
                data = body.encode()
            elif isinstance(body, bytes):
                data = body
            else:
                data = json.dumps(body).encode()
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in reply.headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    holder["server"] = LocalServer(httpd)
    # A short poll interval keeps shutdown (once per test) fast.
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield holder["server"]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
