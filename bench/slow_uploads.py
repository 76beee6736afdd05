"""Stalled uploads against the web process as the Procfile starts it.

    .venv/bin/python -m bench.slow_uploads [--stalled 40] [--probes 20] [--workers 2]
        [--trickle-every 1.0] [--redis redis://127.0.0.1:6379/13]

Opens `--stalled` connections that each send a webhook's headers (Content-Length: 1000) and then
one byte of the body every `--trickle-every` seconds, the way a slow or hostile client holds a
server's attention. While they are open it sends `--probes` valid signed 100-event webhooks and as
many `GET /healthz`, one after the other on fresh connections, and reports their latency next to
the same probes with no stalled connection. Then it watches the stalled connections and reports
when the server cut them off (a connection the server never cuts is reported as still open after
60 s). A probe that gets no answer within 30 s counts as timed out. The Redis database given is
FLUSHED.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import os
import re
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from bench.ingest import free_port, signed_batches, start_web

ROOT = Path(__file__).resolve().parent.parent
PROBE_TIMEOUT = 30.0
CUTOFF_WATCH_SECONDS = 60.0
DECLARED_BODY_BYTES = 1000


def procfile_command(process: str = "web") -> list[str]:
    """The Procfile's command line for `process`, with ${NAME:-default} expanded from the
    environment and the executable taken from this interpreter's environment."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == process:
            expanded = re.sub(
                r"\$\{(\w+)(?::-([^}]*))?\}",
                lambda m: os.environ.get(m.group(1), m.group(2) or ""),
                command.strip(),
            )
            argv = shlex.split(expanded)
            local = Path(sys.executable).with_name(argv[0])
            return [str(local) if local.exists() else argv[0], *argv[1:]]
    raise SystemExit(f"no `{process}:` line in {ROOT / 'Procfile'}")


class StalledUploads:
    """Connections that declare a body and send it one byte at a time, for as long as the server
    keeps them open. `open_count()` says how many the server has not cut off yet. With
    `keep_open`, every connection the server cuts off is replaced by a new one, so `count` stay
    open for as long as this runs."""

    def __init__(
        self, port: int, count: int, every: float, *, in_headers: bool = False, keep_open: bool = False
    ) -> None:
        self.port = port
        self.every = every
        self.count = count
        self.keep_open = keep_open
        self.sockets: list[socket.socket] = []
        self.opened_after: list[float] = []
        self.closed_after: dict[int, float] = {}
        self.answers: dict[int, bytes] = {}
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._lock = threading.RLock()
        self._head = (
            "POST /webhooks/hubspot HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"X-HubSpot-Signature-v3: stalled\r\nX-HubSpot-Request-Timestamp: {int(time.time() * 1000)}\r\n"
            f"Content-Length: {DECLARED_BODY_BYTES}\r\n"
        ).encode()
        # Either the header block never ends (a byte of a header value at a time), or it ends and
        # the body comes a byte at a time.
        self._head += b"X-Padding: " if in_headers else b"\r\n["
        for _ in range(count):
            self._open()
        self._thread = threading.Thread(target=self._trickle, daemon=True)
        self._thread.start()

    def _open(self) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        sock.sendall(self._head)
        sock.setblocking(False)
        self.sockets.append(sock)
        self.opened_after.append(time.monotonic() - self.started)

    def _trickle(self) -> None:
        while not self._stop.wait(self.every):
            with self._lock:
                for index, sock in enumerate(list(self.sockets)):
                    if index in self.closed_after:
                        continue
                    self._check(index, sock)
                    if index not in self.closed_after:
                        try:
                            sock.send(b" ")
                        except OSError:
                            self._closed(index)
                if self.keep_open:
                    for _ in range(self.count - (len(self.sockets) - len(self.closed_after))):
                        self._open()

    def _check(self, index: int, sock: socket.socket) -> None:
        try:
            data = sock.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            self._closed(index)
            return
        if data:
            self.answers[index] = self.answers.get(index, b"") + data
            return
        self._closed(index)

    def _closed(self, index: int) -> None:
        self.closed_after.setdefault(index, time.monotonic() - self.started)

    def lifetimes(self) -> list[float]:
        """Seconds each connection the server cut off had been open, shortest first."""
        return sorted(closed - self.opened_after[index] for index, closed in self.closed_after.items())

    def open_count(self) -> int:
        with self._lock:
            for index, sock in enumerate(self.sockets):
                if index not in self.closed_after:
                    self._check(index, sock)
            return len(self.sockets) - len(self.closed_after)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        with self._lock:
            for sock in self.sockets:
                sock.close()


@dataclass
class Probes:
    webhook: list[float] = field(default_factory=list)
    healthz: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    stalled_open: list[int] = field(default_factory=list)  # stalled connections open at each probe

    def row(self, label: str) -> str:
        def stats(values: list[float]) -> str:
            if not values:
                return "- | -"
            return f"{statistics.median(values) * 1000:.0f} | {max(values) * 1000:.0f}"

        open_during = f"{min(self.stalled_open)}-{max(self.stalled_open)}" if self.stalled_open else "-"
        return (
            f"| {label} | {stats(self.webhook)} | {stats(self.healthz)} | {len(self.failures)} "
            f"| {open_during} |"
        )


def timed(port: int, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> int | str:
    """One request on a fresh connection: its status, or the error's name."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=PROBE_TIMEOUT)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    except OSError as exc:
        return type(exc).__name__
    finally:
        conn.close()


def probe(port: int, count: int, ids: itertools.count, stalled: StalledUploads | None) -> Probes:
    result = Probes()
    for batch in signed_batches(count, ids):
        started = time.perf_counter()
        status = timed(port, "POST", "/webhooks/hubspot", batch.body, batch.headers)
        result.webhook.append(time.perf_counter() - started)
        if status != 204:
            result.failures.append(f"webhook: {status}")
        started = time.perf_counter()
        status = timed(port, "GET", "/healthz", None, {})
        result.healthz.append(time.perf_counter() - started)
        if status != 200:
            result.failures.append(f"healthz: {status}")
        if stalled is not None:
            result.stalled_open.append(stalled.open_count())
        time.sleep(0.1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stalled", type=int, default=40)
    parser.add_argument("--probes", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--trickle-every", type=float, default=1.0)
    parser.add_argument(
        "--in-headers", action="store_true", help="stall in the header block instead of the body"
    )
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/13")
    args = parser.parse_args()

    r = redis.Redis.from_url(args.redis)
    r.flushdb()
    port = free_port()
    server = start_web(
        procfile_command(), port, args.redis, args.workers, timeout=30.0, stderr=subprocess.DEVNULL
    )
    ids = itertools.count(1)
    try:
        quiet = probe(port, args.probes, ids, None)
        stalled = StalledUploads(port, args.stalled, args.trickle_every, in_headers=args.in_headers)
        time.sleep(0.5)  # let the server take them in before the first probe
        during = probe(port, args.probes, ids, stalled)
        watch_until = stalled.started + CUTOFF_WATCH_SECONDS
        while stalled.open_count() and time.monotonic() < watch_until:
            time.sleep(0.2)
        still_open = stalled.open_count()
        cut = sorted(stalled.closed_after.values())
        answered = {a.split(b"\r\n", 1)[0].decode(errors="replace") for a in stalled.answers.values()}
        stalled.close()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        r.flushdb()
    command = " ".join(procfile_command()[1:])
    if os.environ.get("GUNICORN_CMD_ARGS"):
        command += f" with GUNICORN_CMD_ARGS={os.environ['GUNICORN_CMD_ARGS']!r}"
    print(
        f"web: {command} (WEB_CONCURRENCY={args.workers}); {args.stalled} stalled uploads, "
        f"one byte of the {'headers' if args.in_headers else 'body'} every {args.trickle_every:g} s\n"
    )
    print(
        "| probes | webhook p50 ms | webhook max ms | healthz p50 ms | healthz max ms | failed "
        "| stalled still open during probes |"
    )
    print("|---|---|---|---|---|---|---|")
    print(quiet.row("no stalled uploads"))
    print(during.row(f"{args.stalled} stalled uploads open"))
    if cut:
        print(
            f"\nstalled uploads cut off: {len(cut)}, after {cut[0]:.1f}-{cut[-1]:.1f} s "
            f"(answers seen: {', '.join(sorted(answered)) or 'none, connection closed'})"
        )
    print(f"stalled uploads still open after {CUTOFF_WATCH_SECONDS:.0f} s: {still_open}")
    for failure in sorted(set(during.failures)):
        print(f"    failed probe: {failure} (x{during.failures.count(failure)})")


if __name__ == "__main__":
    main()
