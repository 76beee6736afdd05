"""The web process as the Procfile starts it, against slow and hostile clients.

Every test starts the Procfile's `web:` command (gunicorn with gunicorn_conf.py, two worker
processes) over the test Redis and talks to it over real sockets.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from hubspot.utils.signature import Signature

from handoff_worker.celery_app import HANDOFF_QUEUE, queue_key

ROOT = Path(__file__).resolve().parents[2]
SECRET = "web-test-secret-0000"
APP_ID = "4242"
PUBLIC_URL = "https://handoff.example.com/webhooks/hubspot"
STALLED = 50
READ_TIMEOUT = "10"  # long enough for every probe to be answered while the stalled uploads are open

pytestmark = pytest.mark.slow


def procfile_web_command() -> list[str]:
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == "web":
            argv = shlex.split(
                re.sub(r"\$\{(\w+)(?::-([^}]*))?\}", lambda m: m.group(2) or "", command.strip())
            )
            local = Path(sys.executable).with_name(argv[0])
            return [str(local) if local.exists() else argv[0], *argv[1:]]
    raise AssertionError("the Procfile has no web: line")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class WebProcess:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start_web(tmp_path: Path, redis_url: str, **env: str) -> WebProcess:
    port = free_port()
    log = tmp_path / f"web-{port}.log"
    environment = {
        **os.environ,
        "PORT": str(port),
        "WEB_CONCURRENCY": "2",
        "REDIS_URL": redis_url,
        "HUBSPOT_CLIENT_SECRET": SECRET,
        "HUBSPOT_APP_ID": APP_ID,
        "WEBHOOK_PUBLIC_URL": PUBLIC_URL,
        "HANDOFF_CONFIG": str(ROOT / "config" / "nurture.yaml"),
        "WEB_READ_TIMEOUT": READ_TIMEOUT,
        "XDG_RUNTIME_DIR": str(tmp_path),
        **env,
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            procfile_web_command(), cwd=ROOT, env=environment, stdout=out, stderr=subprocess.STDOUT
        )
    web = WebProcess(process, port, log)
    while True:  # bounded by the test's timeout
        if process.poll() is not None:
            raise AssertionError(f"the web process exited with {process.returncode}:\n{web.output()}")
        try:
            if requests.get(web.url("/healthz"), timeout=1).status_code == 200:
                return web
        except requests.RequestException:
            time.sleep(0.1)


def stop_web(web: WebProcess) -> None:
    web.process.terminate()
    try:
        web.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        web.process.kill()
        web.process.wait()


@pytest.fixture
def web(tmp_path: Path, redis_url: str) -> Iterator[WebProcess]:
    process = start_web(tmp_path, redis_url)
    yield process
    stop_web(process)


def signed(events: list[dict[str, Any]], uri: str = PUBLIC_URL) -> tuple[bytes, dict[str, str]]:
    """A body and the headers HubSpot would send with it, signed by HubSpot's SDK."""
    body = json.dumps(events).encode()
    timestamp = str(int(time.time() * 1000))
    signature = Signature.get_signature(
        SECRET, body.decode(), "v3", http_uri=uri, http_method="POST", timestamp=timestamp
    )
    return body, {
        "Content-Type": "application/json",
        "X-HubSpot-Signature-v3": signature,
        "X-HubSpot-Request-Timestamp": timestamp,
    }


def lost_deal_event(event_id: int, deal_id: int) -> dict[str, Any]:
    return {
        "eventId": event_id,
        "subscriptionId": 7,
        "portalId": 123,
        "appId": 99,
        "occurredAt": int(time.time() * 1000),
        "subscriptionType": "deal.propertyChange",
        "attemptNumber": 0,
        "objectId": deal_id,
        "propertyName": "dealstage",
        "propertyValue": "closedlost",
        "changeSource": "CRM_UI",
    }


def queued_deals(redis_url: str) -> set[str]:
    client = redis.Redis.from_url(redis_url)
    deals = set()
    for raw in client.lrange(queue_key(HANDOFF_QUEUE), 0, -1):
        _args, kwargs, _embed = json.loads(base64.b64decode(json.loads(raw)["body"]))
        deals.add(str(kwargs["deal_id"]))
    return deals


class StalledUploads:
    """Connections that send part of a validly signed webhook, then one more byte every half
    second (half of them stall inside the header block, half inside the body)."""

    def __init__(self, port: int, count: int, first_deal: int) -> None:
        self.sockets: list[socket.socket] = []
        self.received: dict[int, bytes] = {}
        self.closed: set[int] = set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        for index in range(count):
            body, headers = signed([lost_deal_event(900_000 + index, first_deal + index)])
            head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            request = (
                f"POST /webhooks/hubspot HTTP/1.1\r\nHost: handoff.example.com\r\n{head}"
                f"Content-Length: {len(body)}\r\n"
            ).encode()
            request += b"X-Padding: " if index % 2 else b"\r\n" + body[: len(body) // 2]
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(request)
            sock.setblocking(False)
            self.sockets.append(sock)
        self._thread = threading.Thread(target=self._trickle, daemon=True)
        self._thread.start()

    def _trickle(self) -> None:
        while not self._stop.wait(0.5):
            self.poll(send=b" ")

    def poll(self, send: bytes = b"") -> None:
        with self._lock:
            for index, sock in enumerate(self.sockets):
                if index in self.closed:
                    continue
                try:
                    data = sock.recv(4096)
                except BlockingIOError:
                    data = None
                except OSError:
                    data = b""
                if data == b"":
                    self.closed.add(index)
                    continue
                if data:
                    self.received[index] = self.received.get(index, b"") + data
                if send:
                    try:
                        sock.send(send)
                    except OSError:
                        self.closed.add(index)

    def still_open(self) -> int:
        self.poll()
        return len(self.sockets) - len(self.closed) - len(set(self.received) - self.closed)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for sock in self.sockets:
            sock.close()


@pytest.mark.timeout(120)
def test_stalled_uploads_neither_hold_up_webhooks_nor_stay_open(web: WebProcess, redis_url: str) -> None:
    stalled = StalledUploads(web.port, STALLED, first_deal=500_000)
    try:
        assert stalled.still_open() == STALLED
        for probe in range(5):
            body, headers = signed([lost_deal_event(1_000 + probe, 1_000 + probe)])
            # Timeouts only keep a broken server from hanging the run; no duration is asserted.
            answer = requests.post(web.url("/webhooks/hubspot"), data=body, headers=headers, timeout=30)
            assert answer.status_code == 204, answer.text
            assert requests.get(web.url("/healthz"), timeout=30).status_code == 200
            # Answered while every stalled upload was still open and unanswered.
            assert stalled.still_open() == STALLED

        while stalled.still_open():  # bounded by the test's timeout
            time.sleep(0.2)

        body_stalls = [i for i in range(STALLED) if i % 2 == 0]
        answers = {stalled.received.get(i, b"").split(b"\r\n", 1)[0] for i in body_stalls}
        assert answers == {b"HTTP/1.1 408 Request Timeout"}
        assert all(stalled.received.get(i, b"") == b"" for i in range(1, STALLED, 2))
    finally:
        stalled.close()

    assert queued_deals(redis_url) == {str(1_000 + probe) for probe in range(5)}
    seen = redis.Redis.from_url(redis_url).keys("handoff:webhook:seen:*")
    assert len(seen) == 5
    assert "WEB_READ_TIMEOUT" in web.output()
    assert "Traceback" not in web.output()


@pytest.mark.timeout(60)
def test_a_client_waiting_for_100_continue_is_invited_to_send_its_body(web: WebProcess) -> None:
    body, headers = signed([lost_deal_event(2_000, 2_000)])
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    with socket.create_connection(("127.0.0.1", web.port), timeout=30) as sock:
        sock.sendall(
            f"POST /webhooks/hubspot HTTP/1.1\r\nHost: handoff.example.com\r\n{head}"
            f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n".encode()
        )
        # Nothing more is sent until the server says go on, as curl and many clients do.
        assert sock.recv(4096).startswith(b"HTTP/1.1 100 Continue\r\n")
        sock.sendall(body)
        assert sock.recv(4096).startswith(b"HTTP/1.1 204 ")


@pytest.mark.timeout(60)
def test_forwarded_proto_is_believed_only_from_configured_proxies(tmp_path: Path, redis_url: str) -> None:
    def post(web: WebProcess, *, claimed_scheme: str | None) -> int:
        uri = f"{claimed_scheme or 'http'}://127.0.0.1:{web.port}/webhooks/hubspot"
        body, headers = signed([lost_deal_event(int(time.time() * 1000) % 10**9, 77)], uri=uri)
        if claimed_scheme:
            headers["X-Forwarded-Proto"] = claimed_scheme
        return requests.post(web.url("/webhooks/hubspot"), data=body, headers=headers, timeout=30).status_code

    direct = start_web(tmp_path, redis_url, WEBHOOK_PUBLIC_URL="", TRUSTED_PROXY_COUNT="0")
    try:
        assert post(direct, claimed_scheme=None) == 204
        # A local client claiming https must not change the URL the signature is checked against.
        assert post(direct, claimed_scheme="https") == 401
    finally:
        stop_web(direct)

    behind_proxy = start_web(tmp_path, redis_url, WEBHOOK_PUBLIC_URL="", TRUSTED_PROXY_COUNT="1")
    try:
        assert post(behind_proxy, claimed_scheme="https") == 204
    finally:
        stop_web(behind_proxy)


@pytest.mark.timeout(60)
def test_no_control_socket_is_left_for_another_gunicorn_to_replace(web: WebProcess, tmp_path: Path) -> None:
    # gunicorn's default would be $XDG_RUNTIME_DIR/gunicorn.ctl, shared by every gunicorn of the user.
    assert not list(tmp_path.glob("*.ctl"))


@pytest.mark.timeout(60)
def test_a_bad_read_timeout_stops_start_up_naming_the_setting(tmp_path: Path, redis_url: str) -> None:
    with pytest.raises(AssertionError, match="WEB_READ_TIMEOUT='soon'") as failure:
        start_web(tmp_path, redis_url, WEB_READ_TIMEOUT="soon")
    assert "exited with" in str(failure.value)
