"""Fixtures for the sandbox tests: a real SDK client and a small webhook receiver."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from hubspot import HubSpot

from handoff_worker.sandbox.testing import SandboxServer


@pytest.fixture
def client(sandbox: SandboxServer) -> HubSpot:
    return HubSpot(access_token="test-token", host=sandbox.url)


@dataclass
class Receiver:
    """Records every webhook POST; answers `fail_first` of them with `fail_status`."""

    url: str = ""
    fail_first: int = 0
    fail_status: int = 500
    received: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def events(self, accepted_only: bool = True) -> list[dict[str, Any]]:
        with self.lock:
            chosen = [r for r in self.received if r["answered"] < 400 or not accepted_only]
            return [event for r in chosen for event in json.loads(r["body"])]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"])).decode()
            with state.lock:
                status = state.fail_status if len(state.received) < state.fail_first else 204
                state.received.append({"headers": dict(self.headers), "body": body, "answered": status})
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_port}/webhooks/hubspot"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
