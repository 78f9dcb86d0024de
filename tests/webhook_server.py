"""A real HTTP server on loopback that takes webhooks as a receiver would, and keeps what came.

It answers 200 unless told otherwise: ``answers`` is a queue of status codes for the next
requests, and ``delay`` makes it take that long before answering (to run into drip's time-out).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    host: str
    port: int
    requests: list[Request] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    delay: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str = "/hook") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def taken(self) -> list[Request]:
        """The requests answered 2xx, in order."""
        with self.lock:
            return [request for request in self.requests if request.headers.get("x-answered") == "200"]


@contextmanager
def running_receiver() -> Iterator[Receiver]:
    receiver = Receiver("127.0.0.1", 0)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            length = int(self.headers.get("Content-Length") or 0)
            data = self.rfile.read(length)
            headers = {name.lower(): value for name, value in self.headers.items()}
            with receiver.lock:  # kept as it arrives, whether or not the sender waits for the answer
                receiver.requests.append(Request(self.path, headers, data))
                delay = receiver.delay
            if delay:
                time.sleep(delay)
            with receiver.lock:
                status = receiver.answers.pop(0) if receiver.answers else 200
                headers["x-answered"] = str(status)
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            reply = b"ok" if status < 300 else b"something broke"
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            try:
                self.wfile.write(reply)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting
                pass

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
