"""One webhook base with two steps a provider fills in: `validate` (is it really from them?) and
`parse` (body -> typed events). The base does everything else the same way for any provider:
size and content-type checks, then hands the events on.
"""

from __future__ import annotations

import json
import time
from urllib.parse import quote

from flask import Request

from handoff_worker.domain.events import EventParseError, OversizedNumber, ParsedBatch, parse_batch
from handoff_worker.intake import signature
from handoff_worker.settings import Settings


class RejectedRequestError(Exception):
    """The request is refused. `status` is the HTTP answer, `reason` a short tag for logs/metrics,
    `message` the detail for our log (no secrets, no signatures, no values), and `public` what
    the caller is told: refusals before the signature is checked answer anyone, so they say what
    to fix without naming settings or revealing the server's clock."""

    def __init__(self, status: int, reason: str, message: str, *, public: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.public = message if public is None else public


class WebhookBase:
    """Read the body within limits, `validate`, then `parse`. Raises `RejectedRequestError`."""

    def __init__(self, max_body_bytes: int) -> None:
        self.max_body_bytes = max_body_bytes

    def receive(self, request: Request) -> ParsedBatch:
        body = self.read_body(request)
        self.validate(request, body)
        return self.parse(body)

    def read_body(self, request: Request) -> bytes:
        declared = request.content_length
        if declared is not None and declared > self.max_body_bytes:
            raise self._too_big(declared)
        if request.mimetype != "application/json":
            raise RejectedRequestError(
                415,
                "content_type",
                f"Content-Type must be application/json, got {request.mimetype or 'none'}",
                public="Content-Type must be application/json",
            )
        # Never trust the header alone: read at most one byte past the limit.
        try:
            body = request.stream.read(self.max_body_bytes + 1)
        except Exception as exc:  # each server has its own errors for a broken upload
            # A bad chunk size, a connection dropped mid-body: the client's framing, not our fault.
            raise RejectedRequestError(
                400,
                "unreadable_body",
                f"the body could not be read ({type(exc).__name__}): broken chunked encoding or an "
                "upload cut short",
                public="the body could not be read",
            ) from None
        if len(body) > self.max_body_bytes:
            raise self._too_big(len(body))
        return body

    def _too_big(self, size: int) -> RejectedRequestError:
        return RejectedRequestError(
            413,
            "too_large",
            f"body of {size} bytes is over the limit of {self.max_body_bytes} (WEBHOOK_MAX_BODY_BYTES)",
            public=f"body over the limit of {self.max_body_bytes} bytes",
        )

    def validate(self, request: Request, body: bytes) -> None:
        raise NotImplementedError

    def parse(self, body: bytes) -> ParsedBatch:
        raise NotImplementedError


class HubSpotWebhook(WebhookBase):
    def __init__(self, settings: Settings) -> None:
        super().__init__(settings.webhook_max_body_bytes)
        self.settings = settings

    def validate(self, request: Request, body: bytes) -> None:
        uri, uri_setting = called_uri(request, self.settings)
        try:
            signature.verify(
                request.headers,
                method=request.method,
                uri=uri,
                body=body,
                secrets=self.settings.hubspot_client_secrets,
                versions=self.settings.signature_versions,
                now_ms=int(time.time() * 1000),
                uri_hint=uri_setting,
            )
        except signature.SignatureError as exc:
            raise RejectedRequestError(401, exc.reason, str(exc), public=UNVERIFIED) from None

    def parse(self, body: bytes) -> ParsedBatch:
        """The events of a signed body. A body that is not a JSON array is refused whole (400);
        inside an array each event stands alone (see `parse_batch`)."""
        try:
            return parse_batch(decode_json(body))
        except EventParseError as exc:
            raise RejectedRequestError(400, exc.reason, str(exc)) from None


# Told to every caller whose signature fails, whatever the cause; the cause goes to our log.
UNVERIFIED = "signature check failed"
# Python's own conversion limit is 4,300 digits; no id, time or count HubSpot sends is this long.
_MAX_INTEGER_DIGITS = 40


def decode_json(body: bytes) -> object:
    """`json.loads` whose every failure is a 400 naming the problem, never a 500."""
    try:
        try:
            return json.loads(body)
        except ValueError as exc:
            if isinstance(exc, json.JSONDecodeError | UnicodeDecodeError):
                raise
            # An integer too long for `int()`: read again with such numbers kept as markers, so
            # the event holding one is refused on its own and the rest of the batch still counts.
            # Only this rare path pays for the Python-level hook.
            return json.loads(body, parse_int=_bounded_int)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        # Both messages give a position and the kind of error, never the text around it.
        raise RejectedRequestError(400, "bad_json", f"body is not valid JSON: {exc}") from None
    except RecursionError:
        raise RejectedRequestError(
            400, "too_deep", "body nests arrays or objects too deeply to read (HubSpot sends two levels)"
        ) from None


def _bounded_int(digits: str) -> int | OversizedNumber:
    return int(digits) if len(digits) <= _MAX_INTEGER_DIGITS else OversizedNumber()


def called_uri(request: Request, settings: Settings) -> tuple[str, str]:
    """The URL HubSpot called, and the setting that decides it (named in mismatch messages).

    Behind a proxy the request URL is the proxy's, not HubSpot's, so it comes from
    WEBHOOK_PUBLIC_URL, or from forwarded headers (applied by ProxyFix) when TRUSTED_PROXY_COUNT > 0.
    """
    query = request.query_string.decode("latin-1")
    suffix = f"?{query}" if query else ""
    if settings.webhook_public_url:
        if "?" in settings.webhook_public_url:
            # The setting is the app's target URL, query included, exactly as HubSpot signs it;
            # appending the query received as well would sign "?a=1?a=1".
            return settings.webhook_public_url, "WEBHOOK_PUBLIC_URL"
        return settings.webhook_public_url + suffix, "WEBHOOK_PUBLIC_URL"
    setting = "TRUSTED_PROXY_COUNT" if settings.trusted_proxy_count > 0 else "WEBHOOK_PUBLIC_URL"
    return f"{request.scheme}://{request.host}{_raw_path(request)}{suffix}", setting


def _raw_path(request: Request) -> str:
    # Servers that keep the path as sent (gunicorn's RAW_URI, REQUEST_URI) preserve its escapes.
    raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI")
    if raw and raw.startswith("/"):
        return str(raw).split("?", 1)[0]
    # Otherwise re-escape the decoded path, keeping what HubSpot leaves decoded when hashing.
    return quote(request.script_root + request.path, safe="/:@!$&'()*+,;=~")
