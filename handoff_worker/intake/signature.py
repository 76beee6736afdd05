"""HubSpot webhook signatures (v1, v2, v3) as pure functions.

`verify` either returns the version that matched or raises one `SignatureError` subclass per
failure, each naming the setting a person should check. Digests are compared with
`hmac.compare_digest`. Nothing here logs, and no message ever contains a secret or a signature.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from typing import Protocol

# v3 allows this much clock difference: old timestamps are replays, far-future ones are forged
# or a badly wrong clock.
MAX_AGE_MS = 5 * 60 * 1000
MAX_FUTURE_MS = 60 * 1000
MAX_TIMESTAMP_DIGITS = 19

V3_SIGNATURE_HEADER = "X-HubSpot-Signature-v3"
V3_TIMESTAMP_HEADER = "X-HubSpot-Request-Timestamp"
LEGACY_SIGNATURE_HEADER = "X-HubSpot-Signature"
LEGACY_VERSION_HEADER = "X-HubSpot-Signature-Version"

# HubSpot signs the URI with these escapes decoded.
_DECODED_ESCAPES = {
    "%3A": ":",
    "%2F": "/",
    "%3F": "?",
    "%40": "@",
    "%21": "!",
    "%24": "$",
    "%27": "'",
    "%28": "(",
    "%29": ")",
    "%2A": "*",
    "%2C": ",",
    "%3B": ";",
}


class HeaderLookup(Protocol):
    """Anything with `.get(name)`: a dict or werkzeug's case-insensitive `Headers`."""

    def get(self, key: str) -> str | None: ...


class SignatureError(Exception):
    """The request is not provably from HubSpot. `reason` is a short tag for logs and metrics."""

    reason = "invalid"

    def __init__(self, message: str) -> None:
        super().__init__(message)


class MissingSignatureError(SignatureError):
    reason = "missing_signature"


class TimestampError(SignatureError):
    reason = "bad_timestamp"


class StaleTimestampError(TimestampError):
    reason = "stale_timestamp"


class FutureTimestampError(TimestampError):
    reason = "future_timestamp"


class VersionNotAcceptedError(SignatureError):
    reason = "version_not_accepted"


class SignatureMismatchError(SignatureError):
    reason = "signature_mismatch"


def canonical_uri(uri: str) -> str:
    """The URI as HubSpot hashes it: the listed percent-escapes decoded (either letter case)."""
    if "%" not in uri:
        return uri
    out: list[str] = []
    i = 0
    while i < len(uri):
        escape = uri[i : i + 3].upper()
        if uri[i] == "%" and escape in _DECODED_ESCAPES:
            out.append(_DECODED_ESCAPES[escape])
            i += 3
        else:
            out.append(uri[i])
            i += 1
    return "".join(out)


def v3_signature(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    message = method.encode() + canonical_uri(uri).encode() + body + timestamp.encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def v2_signature(secret: str, method: str, uri: str, body: bytes) -> str:
    return hashlib.sha256(secret.encode() + method.encode() + canonical_uri(uri).encode() + body).hexdigest()


def v1_signature(secret: str, body: bytes) -> str:
    return hashlib.sha256(secret.encode() + body).hexdigest()


def check_timestamp(timestamp: str | None, now_ms: int) -> None:
    """Raise unless `timestamp` (ms since the epoch) is within the allowed window around now."""
    if not timestamp:
        raise MissingSignatureError(
            f"the {V3_TIMESTAMP_HEADER} header is missing; HubSpot always sends it with v3 signatures"
        )
    # ASCII digits only, and no longer than a 64-bit number: `isdigit` also passes "²" and "١٢٣",
    # and thousands of digits cost `int()` an error (or the CPU) before any signature is checked.
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= MAX_TIMESTAMP_DIGITS):
        raise TimestampError(f"the {V3_TIMESTAMP_HEADER} header is not a number of milliseconds")
    age_ms = now_ms - int(timestamp)
    if age_ms > MAX_AGE_MS:
        raise StaleTimestampError(
            f"the request timestamp is {age_ms // 1000} s old (more than {MAX_AGE_MS // 1000} s): "
            "a replay, or this server's clock is wrong (check NTP)"
        )
    if -age_ms > MAX_FUTURE_MS:
        raise FutureTimestampError(
            f"the request timestamp is {-age_ms // 1000} s in the future (more than "
            f"{MAX_FUTURE_MS // 1000} s): this server's clock is wrong (check NTP)"
        )


def verify(
    headers: HeaderLookup,
    *,
    method: str,
    uri: str,
    body: bytes,
    secrets: Sequence[str],
    versions: Sequence[str],
    now_ms: int,
    uri_hint: str = "WEBHOOK_PUBLIC_URL",
) -> str:
    """Check a request's signature against every configured secret. Returns "v1", "v2" or "v3".

    `uri` is the full URL HubSpot called; `uri_hint` names the setting that decides it, so a
    mismatch message can point at it.
    """
    if not secrets:
        raise SignatureMismatchError(
            "no client secret is configured, so no signature can be checked (set HUBSPOT_CLIENT_SECRET)"
        )
    v3_sent = headers.get(V3_SIGNATURE_HEADER)
    if v3_sent and "v3" in versions:
        check_timestamp(headers.get(V3_TIMESTAMP_HEADER), now_ms)
        timestamp = headers.get(V3_TIMESTAMP_HEADER) or ""
        _match(v3_sent, [v3_signature(s, method, uri, body, timestamp) for s in secrets], "v3", uri_hint)
        return "v3"

    legacy_sent = headers.get(LEGACY_SIGNATURE_HEADER)
    legacy_version = (headers.get(LEGACY_VERSION_HEADER) or "v1").strip().lower()
    if legacy_sent and legacy_version in {"v1", "v2"} and legacy_version in versions:
        if legacy_version == "v1":
            expected = [v1_signature(s, body) for s in secrets]
        else:
            expected = [v2_signature(s, method, uri, body) for s in secrets]
        _match(legacy_sent, expected, legacy_version, uri_hint)
        return legacy_version

    offered = "v3" if v3_sent else legacy_version if legacy_sent else None
    if offered is None:
        raise MissingSignatureError(
            f"no {V3_SIGNATURE_HEADER} header: the request is not from HubSpot, or the app's "
            "webhook target is not this URL"
        )
    raise VersionNotAcceptedError(
        f"the request is signed with {offered}, which is not accepted "
        f"(HUBSPOT_SIGNATURE_VERSIONS={','.join(versions)}); add it there only if you must"
    )


def _match(sent: str, expected: Sequence[str], version: str, uri_hint: str) -> None:
    # Every secret is compared (no early exit) so timing does not tell which one exists.
    matched = False
    for candidate in expected:
        matched |= hmac.compare_digest(candidate.encode(), sent.strip().encode())
    if not matched:
        hint = "HUBSPOT_CLIENT_SECRET" if version == "v1" else f"HUBSPOT_CLIENT_SECRET and {uri_hint}"
        raise SignatureMismatchError(f"the {version} signature does not match (check {hint})")
