"""The web process's gunicorn worker: gevent, with one deadline on receiving each request.

Why gevent: a connection costs a greenlet, not a thread. With threads, every connection that is
still sending its body holds a thread, so a few dozen clients that send one byte a second (slow
networks, or someone doing it on purpose) leave none for HubSpot's webhooks or `/healthz`. With
greenlets, a stalled connection waits in the event loop and costs a socket and a little memory;
the intake's work (a few milliseconds of CPU per request, then Redis) runs as soon as a request
is in.

Why a deadline: a socket timeout bounds each read, and a client that sends a byte just before it
expires stretches the request for ever. Here the clock starts when the server begins waiting for a
request (the connection opened, or the previous answer was sent on a kept-alive one) and does not
restart: the headers (gunicorn's header read, under `timeout_ctx`) and the whole body (read here,
before the app runs) must be in within WEB_READ_TIMEOUT seconds. A request whose headers are late
is dropped with its connection; one whose body is late is answered 408 and its connection closed.
HubSpot sends a whole request in milliseconds and retries any failure, so nothing is lost.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import time
from collections.abc import Mapping
from typing import Any

import gevent
from gevent.local import local
from gunicorn.workers.ggevent import GeventWorker

from handoff_worker.errors import SettingsError

READ_TIMEOUT_VARIABLE = "WEB_READ_TIMEOUT"
DEFAULT_READ_TIMEOUT = 5.0  # HubSpot gives up after 5 s, so a request slower than that is lost anyway
MAX_READ_TIMEOUT = 300.0
_READ_CHUNK = 64 * 1024


def read_timeout_from(environ: Mapping[str, str]) -> float:
    """WEB_READ_TIMEOUT in seconds, or a SettingsError that names it and shows a good value."""
    raw = environ.get(READ_TIMEOUT_VARIABLE, "").strip()
    if not raw:
        return DEFAULT_READ_TIMEOUT
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds <= MAX_READ_TIMEOUT:  # also refuses nan and inf
        raise SettingsError(
            f"{READ_TIMEOUT_VARIABLE}={raw!r} must be a number of seconds above 0 and at most "
            f"{MAX_READ_TIMEOUT:g}, e.g. {READ_TIMEOUT_VARIABLE}={DEFAULT_READ_TIMEOUT:g}"
        )
    return seconds


def whole_number_from(environ: Mapping[str, str], variable: str, default: int) -> int:
    """A positive whole number from the environment, or a SettingsError that names the variable."""
    raw = environ.get(variable, "").strip()
    if not raw:
        return default
    if not raw.isascii() or not raw.isdigit() or int(raw) < 1:
        raise SettingsError(
            f"{variable}={raw!r} must be a whole number of at least 1, e.g. {variable}={default}"
        )
    return int(raw)


def _body_limit() -> int:
    from handoff_worker.settings import get_settings

    return get_settings().webhook_max_body_bytes


class _ReadTimedOutError(Exception):
    pass


class DeadlineGeventWorker(GeventWorker):
    """gunicorn's gevent worker; each request must arrive whole within `read_timeout` seconds."""

    read_timeout: float = DEFAULT_READ_TIMEOUT

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.read_timeout = read_timeout_from(os.environ)
        self.max_body_bytes = 0
        self._current = local()  # per connection greenlet: when its request must be in

    def load_wsgi(self) -> None:
        super().load_wsgi()
        # The app's own limit, so buffering a body never holds more than the app would read.
        self.max_body_bytes = _body_limit()

    def timeout_ctx(self) -> gevent.Timeout:
        # gunicorn calls this around reading each request's headers on a connection; `False`
        # makes a late request end quietly, and gunicorn then closes the connection.
        self._current.deadline = time.monotonic() + self.read_timeout
        return gevent.Timeout(self.read_timeout, False)

    def handle_request(self, listener_name: Any, req: Any, sock: Any, addr: Any) -> bool:
        deadline = getattr(self._current, "deadline", None) or time.monotonic() + self.read_timeout
        self._current.deadline = None
        try:
            body, whole = self._read_body(req, sock, deadline)
        except _ReadTimedOutError:
            self._answer_read_timeout(sock)
            raise StopIteration() from None  # gunicorn closes the connection
        req.body = io.BytesIO(body)
        kept_alive = bool(super().handle_request(listener_name, req, sock, addr))
        if not whole:
            # The rest of an over-long body is still on the socket: no further request can be
            # told apart from it.
            raise StopIteration()
        return kept_alive

    def _read_body(self, req: Any, sock: Any, deadline: float) -> tuple[bytes, bool]:
        """The body (at most one byte past the app's limit) and whether it was read to its end."""
        declared = req.body.reader.length if hasattr(req.body.reader, "length") else None
        if declared is not None and declared > self.max_body_bytes:
            req._expected_100_continue = False  # not inviting a body that will be refused
            return b"", False  # the app refuses it (413) on the declared length alone
        if getattr(req, "_expected_100_continue", False):
            # The client waits for this before it sends the body; gunicorn would send it only once
            # the app runs, after the body this read is waiting for.
            sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            req._expected_100_continue = False
        cap = self.max_body_bytes + 1
        chunks: list[bytes] = []
        size = 0
        timer = gevent.Timeout(max(deadline - time.monotonic(), 0.001))
        timer.start()
        try:
            while size < cap:
                chunk = req.body.read(min(_READ_CHUNK, cap - size))
                if not chunk:
                    return b"".join(chunks), True
                chunks.append(chunk)
                size += len(chunk)
            return b"".join(chunks), False
        except gevent.Timeout as exc:
            if exc is not timer:
                raise
            raise _ReadTimedOutError() from None
        finally:
            timer.close()

    def _answer_read_timeout(self, sock: Any) -> None:
        from handoff_worker.intake import metrics

        metrics.REJECTED.labels(reason="read_timeout").inc()
        metrics.REQUESTS.labels(status="408").inc()
        self.log.warning(
            "request body not received whole within %g s (%s): answered 408 and closed the connection",
            self.read_timeout,
            READ_TIMEOUT_VARIABLE,
        )
        message = json.dumps(
            {
                "error": f"the request was not received whole within {self.read_timeout:g} s "
                f"({READ_TIMEOUT_VARIABLE}); send it again"
            }
        ).encode()
        head = (
            "HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(message)}\r\nConnection: close\r\n\r\n"
        ).encode()
        with contextlib.suppress(OSError):  # a client that is gone needs no answer
            sock.sendall(head + message)
