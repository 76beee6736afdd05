"""One place that turns whatever went wrong on the wire into one of our errors.

The SDK raises a different `ApiException` class per API package, lets urllib3's connection and
timeout errors through unwrapped, and our own `requests` calls raise `requests` exceptions. Code
above the gateway only ever sees `handoff_worker.errors`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

import requests
import urllib3.exceptions

from handoff_worker.errors import (
    DailyLimitError,
    HubSpotError,
    NotFoundError,
    PermanentHubSpotError,
    RateLimitedError,
    RequestNotSentError,
    TransientHubSpotError,
)

__all__ = ["RequestNotSentError", "error_from_response", "translate", "without_emails"]

# HubSpot's fallback when a rolling-window 429 says nothing about when to come back.
DEFAULT_RATE_LIMIT_WINDOW_SECONDS = 10.0
_TRANSIENT_STATUSES = {423, 429, 477}
# An email as text or percent-encoded in a URL (`ann%40example.com`, `ann%2Bx%40example.com`).
_EMAIL = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+(?:@|%40)[\w-]+(?:\.[\w-]+)+", re.IGNORECASE)
EMAIL_PLACEHOLDER = "<email>"


def without_emails(text: str) -> str:
    """`text` with every email replaced: error text is kept in the audit, the dead letter and logs,
    and an answer may echo the address a request was about."""
    return _EMAIL.sub(EMAIL_PLACEHOLDER, text)


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    if not headers:
        return None
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return None


def _float_or_none(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return None  # Retry-After may be an HTTP date; HubSpot sends seconds, so ignore dates


def _parse_body(body: bytes | str | None) -> dict[str, Any]:
    if not body:
        return {}
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return {"message": body.decode(errors="replace") if isinstance(body, bytes) else body}
    return parsed if isinstance(parsed, dict) else {}


def error_from_response(
    status: int, headers: Mapping[str, str] | None, body: bytes | str | None, operation: str
) -> HubSpotError:
    """Our error for an HTTP answer outside 2xx."""
    payload = _parse_body(body)
    message = without_emails(str(payload.get("message") or f"HTTP {status} with no message"))
    common: dict[str, Any] = {
        "status": status,
        "operation": operation,
        "correlation_id": payload.get("correlationId") or _header(headers, "X-HubSpot-Correlation-Id"),
        "category": payload.get("category") or payload.get("errorType"),
    }
    retry_after = _float_or_none(_header(headers, "Retry-After"))
    if status == 429:
        policy = payload.get("policyName")
        if policy == "DAILY":
            return DailyLimitError(message, policy=policy, **common)
        if retry_after is None:
            # No Retry-After: the rolling window is the honest wait, not a quick hammer.
            interval_ms = _float_or_none(_header(headers, "X-HubSpot-RateLimit-Interval-Milliseconds"))
            retry_after = interval_ms / 1000 if interval_ms else DEFAULT_RATE_LIMIT_WINDOW_SECONDS
        return RateLimitedError(message, policy=policy, retry_after=retry_after, **common)
    if status == 404:
        return NotFoundError(message, **common)
    if status in _TRANSIENT_STATUSES or status >= 500:
        return TransientHubSpotError(message, retry_after=retry_after, **common)
    return PermanentHubSpotError(message, **common)


def _is_sdk_api_exception(exc: BaseException) -> bool:
    # Each SDK package ships its own ApiException; they share only their name and attributes.
    return any(
        cls.__name__ == "ApiException" and cls.__module__.startswith("hubspot.") for cls in type(exc).__mro__
    )


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and what it wraps, outermost first: requests and urllib3 nest the real failure in
    `args`, `reason` and `__cause__`."""
    seen: set[int] = set()
    pending = [exc]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        inner = [a for a in current.args if isinstance(a, BaseException)]
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            inner.append(reason)
        if current.__cause__ is not None:
            inner.append(current.__cause__)
        pending.extend(inner)


def describe_wire_failure(exc: BaseException) -> str:
    """What failed on the wire, by exception type and the system's reason only.

    Never the exceptions' own text: urllib3 and requests put the request's URL in it, and the
    legacy enrollment's URL holds the contact's email.
    """
    chain = list(_causes(exc))
    names = " < ".join(dict.fromkeys(type(e).__name__ for e in chain))
    reasons = [e.strerror for e in chain if isinstance(e, OSError) and e.strerror]
    return f"{names} ({reasons[-1]})" if reasons else names


def _connection_error(exc: BaseException, operation: str, *, not_sent: bool) -> TransientHubSpotError:
    kind = RequestNotSentError if not_sent else TransientHubSpotError
    return kind(
        f"{describe_wire_failure(exc)}. Check that HUBSPOT_BASE_URL is reachable from this host",
        operation=operation,
    )


def translate(exc: BaseException, operation: str) -> HubSpotError:
    """Our error for any exception raised while talking to HubSpot."""
    if isinstance(exc, HubSpotError):
        return exc
    if type(exc).__module__.startswith("hubspot.") and not _is_sdk_api_exception(exc):
        # ApiTypeError/ApiValueError: the SDK refused to build the request before sending it.
        return PermanentHubSpotError(
            f"the SDK refused the request: {without_emails(str(exc))}", operation=operation
        )
    if _is_sdk_api_exception(exc):
        status = int(getattr(exc, "status", 0) or 0)
        if status == 0:  # the SDK's own wrapper for TLS failures: no answer was received
            # Its reason is the error's type on the first line, then the error's text, URL included.
            reason = str(getattr(exc, "reason", "") or "").splitlines() or ["unknown"]
            return TransientHubSpotError(f"no HTTP answer: {without_emails(reason[0])}", operation=operation)
        headers = getattr(exc, "headers", None)
        return error_from_response(status, dict(headers or {}), getattr(exc, "body", None), operation)
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        return translate(exc.reason, operation)
    # NewConnectionError subclasses ConnectTimeoutError in urllib3, so refusals are tested first.
    if isinstance(exc, urllib3.exceptions.NewConnectionError | ConnectionRefusedError):
        return _connection_error(exc, operation, not_sent=True)
    if isinstance(exc, urllib3.exceptions.TimeoutError | requests.Timeout):
        not_sent = isinstance(exc, urllib3.exceptions.ConnectTimeoutError | requests.ConnectTimeout)
        return _timeout_error(exc, operation, not_sent=not_sent)
    if isinstance(exc, requests.ConnectionError) and _refused(exc):
        return _connection_error(exc, operation, not_sent=True)
    if isinstance(exc, urllib3.exceptions.HTTPError | requests.RequestException | ConnectionError):
        return _connection_error(exc, operation, not_sent=False)
    raise exc  # a bug of ours, not a HubSpot failure: let it surface unchanged


def _timeout_error(exc: BaseException, operation: str, *, not_sent: bool) -> TransientHubSpotError:
    kind = RequestNotSentError if not_sent else TransientHubSpotError
    return kind(
        f"timed out ({type(exc).__name__}); raise HUBSPOT_TIMEOUT_SECONDS if HubSpot is just slow",
        operation=operation,
    )


def _refused(exc: requests.ConnectionError) -> bool:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, urllib3.exceptions.NewConnectionError | ConnectionRefusedError):
            return True
        cause = cause.args[0] if cause.args and isinstance(cause.args[0], BaseException) else None
        if isinstance(cause, urllib3.exceptions.MaxRetryError):
            cause = cause.reason
    return False
