"""Hostile and malformed webhook requests, each with the answer the intake owes it.

The same corpus serves the CI test that runs it against the web process as the Procfile starts it
(tests/intake/test_hostile_corpus.py) and the hostile-input drill (`python3 dev.py drills`). It
covers signatures, headers, bodies, HTTP framing, unicode, numbers and sizes; Redis loss is a step
of its own in both, as it is a state of the server, not a request.

Requests are written to a socket byte for byte (`send`), so framing no HTTP client would produce
(two Content-Lengths, a bad chunk size, a body shorter than announced) is sent as written.

What every answer must respect (`verdict`): never a 5xx; a forged request is a 401; a refused one
queues nothing; an accepted one (204) queues exactly the records it names. Bodies carry personal
data (`PERSONAL_DATA`) so a test can prove none of it reaches a log.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import time
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import urlsplit

WEBHOOK_PATH = "/webhooks/hubspot"
# Strings that must never appear in a log: they stand for what HubSpot sends about people.
PERSONAL_DATA = ("jane.doe@example.com", "Jane Doe", "+1 555 0100")


class Expect(StrEnum):
    FORGED = "forged"  # 401, nothing queued
    REFUSED = "refused"  # a 4xx (or the connection closed unanswered), nothing queued
    ACCEPTED = "accepted"  # 204; `queues` lists the deals whose work must be queued
    EITHER = "either"  # a 4xx or a 204, never a 5xx; nothing beyond `queues` queued


@dataclass(frozen=True)
class HostileRequest:
    label: str
    body: bytes
    headers: dict[str, str]
    expect: Expect
    # Deal ids whose handoff must be queued when the request is accepted.
    queues: frozenset[str] = frozenset()
    # The whole request as written on the wire ({host} is filled in), for framing cases.
    raw: bytes | None = None
    method: str = "POST"
    target: str = WEBHOOK_PATH

    @property
    def forged(self) -> bool:
        return self.expect is Expect.FORGED


@dataclass
class Answer:
    status: int  # 0: the server closed the connection without an answer
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def answer_verdict(item: HostileRequest, answer: Answer) -> str | None:
    """What is wrong with the status of `answer`, or None."""
    status = answer.status
    if status >= 500:
        return f"{item.label}: answered {status}"
    if item.expect is Expect.FORGED and status != 401:
        return f"{item.label}: answered {status}, not 401"
    if item.expect is Expect.REFUSED and not (status == 0 or 400 <= status < 500):
        return f"{item.label}: answered {status}, not a refusal"
    if item.expect is Expect.ACCEPTED and status != 204:
        return f"{item.label}: answered {status}, not 204"
    return None


def verdict(item: HostileRequest, answer: Answer, queued_before: int, queued_after: set[str]) -> str | None:
    """`answer_verdict`, and what was queued: `queued_before` is how many task messages were
    queued before the request, `queued_after` the deal ids queued after it."""
    problem = answer_verdict(item, answer)
    if problem:
        return problem
    if answer.status != 204 and len(queued_after) != queued_before:
        return f"{item.label}: refused with {answer.status} but queued work"
    missing = item.queues - queued_after
    if answer.status == 204 and missing:
        return f"{item.label}: accepted but did not queue deals {sorted(missing)}"
    return None


def sign_v3(secret: str, url: str, body: bytes, timestamp_ms: int | str) -> str:
    """HubSpot's v3 signature, written out here so the corpus does not trust the code it tests."""
    message = b"POST" + url.encode() + body + str(timestamp_ms).encode()
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


def send(item: HostileRequest, url: str, *, timeout: float = 10.0) -> Answer:
    """Send `item` to the server of `url` (the webhook URL) over a fresh connection."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    netloc = f"{host}:{port}"
    if item.raw is not None:
        wire = item.raw.replace(b"{host}", netloc.encode())
    else:
        lines = [f"{item.method} {item.target} HTTP/1.1", f"Host: {netloc}", "Connection: close"]
        if "Content-Length" not in item.headers and "Transfer-Encoding" not in item.headers:
            lines.append(f"Content-Length: {len(item.body)}")
        lines += [f"{name}: {value}" for name, value in item.headers.items()]
        wire = "\r\n".join(lines).encode("utf-8", "surrogateescape") + b"\r\n\r\n" + item.body
    with socket.create_connection((host, port), timeout=timeout) as conn:
        try:
            conn.sendall(wire)
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may answer and close before it has read everything
        received = b""
        try:
            while chunk := conn.recv(65536):
                received += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    return _parse_answer(received)


def _parse_answer(received: bytes) -> Answer:
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    fields = status_line.split(" ", 2)
    if len(fields) < 2 or not fields[1].isdigit():
        return Answer(0)
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Answer(int(fields[1]), body, headers)


def event(deal_id: object, **overrides: object) -> dict[str, object]:
    """A deal moved to closed lost, as HubSpot sends it."""
    body: dict[str, object] = {
        "eventId": 1,
        "subscriptionId": 1,
        "portalId": 1,
        "appId": 424242,
        "occurredAt": int(time.time() * 1000),
        "subscriptionType": "deal.propertyChange",
        "attemptNumber": 0,
        "objectId": deal_id,
        "propertyName": "dealstage",
        "propertyValue": "closedlost",
        "changeSource": "CRM_UI",
        "sourceId": "userId:1",
    }
    body.update(overrides)
    return body


def _json(events: list[dict[str, object]], **options: object) -> bytes:
    return json.dumps(events, **options).encode()  # type: ignore[arg-type]


def build_corpus(secret: str, url: str, *, first_deal_id: int = 910_000) -> list[HostileRequest]:
    """Every request of the corpus, signed with `secret` for `url` (the exact webhook URL the
    server computes). Accepted requests name deals from `first_deal_id` up, each once, so what
    they queue can be checked."""
    now = int(time.time() * 1000)
    ids = iter(range(first_deal_id, first_deal_id + 10_000))

    def deal() -> int:
        return next(ids)

    def signed_headers(
        body: bytes, *, at: int | str = now, key: str = secret, for_url: str = url
    ) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            "X-HubSpot-Signature-v3": sign_v3(key, for_url, body, at),
            "X-HubSpot-Request-Timestamp": str(at),
        }

    def signed(label: str, body: bytes, expect: Expect, queues: tuple[int, ...] = ()) -> HostileRequest:
        return HostileRequest(label, body, signed_headers(body), expect, frozenset(map(str, queues)))

    def forged(label: str, body: bytes, headers: dict[str, str]) -> HostileRequest:
        return HostileRequest(f"forged: {label}", body, headers, Expect.FORGED)

    corpus: list[HostileRequest] = []
    valid = _json([event(deal())])

    # --- signatures ------------------------------------------------------------------------------
    plain = {"Content-Type": "application/json"}
    corpus += [
        forged("signed with another secret", valid, signed_headers(valid, key=secret + "-wrong")),
        forged("stale timestamp (10 min old)", valid, signed_headers(valid, at=now - 600_000)),
        forged("future timestamp (10 min ahead)", valid, signed_headers(valid, at=now + 600_000)),
        forged("no signature headers", valid, plain),
        forged("v3 signature without its timestamp", valid, {**plain, "X-HubSpot-Signature-v3": "x"}),
        forged(
            "v1 signature only (v1 not accepted)",
            valid,
            {
                **plain,
                "X-HubSpot-Signature": hashlib.sha256(secret.encode() + valid).hexdigest(),
                "X-HubSpot-Signature-Version": "v1",
            },
        ),
        forged(
            "v2 signature only (v2 not accepted)",
            valid,
            {
                **plain,
                "X-HubSpot-Signature": hashlib.sha256(
                    secret.encode() + b"POST" + url.encode() + valid
                ).hexdigest(),
                "X-HubSpot-Signature-Version": "v2",
            },
        ),
        forged("signature for another body", valid + b" ", signed_headers(valid)),
        forged("signature for another URL", valid, signed_headers(valid, for_url=url + "?x=1")),
        forged(
            "signature garbage",
            valid,
            {**signed_headers(valid), "X-HubSpot-Signature-v3": "%%%not-base64%%%" * 20},
        ),
        forged(
            "signature 8,000 characters",
            valid,
            {**signed_headers(valid), "X-HubSpot-Signature-v3": "A" * 8000},
        ),
        forged("signature empty", valid, {**signed_headers(valid), "X-HubSpot-Signature-v3": ""}),
    ]
    for label, timestamp in [
        ("a word", "soon"),
        ("superscript two", "\u00b2"),
        ("Arabic-Indic digits", "\u0661\u0667\u0660\u0660"),
        ("5,000 digits", "1" * 5000),
        ("negative", "-1"),
        ("float", f"{now}.5"),
        ("hex", hex(now)),
    ]:
        headers = {**signed_headers(valid), "X-HubSpot-Request-Timestamp": timestamp}
        corpus.append(forged(f"timestamp {label}", valid, headers))

    # --- headers ---------------------------------------------------------------------------------
    content_types = [
        ("missing", None),
        ("text/plain", "text/plain"),
        ("form", "application/x-www-form-urlencoded"),
    ]
    for label, content_type in content_types:
        headers = signed_headers(valid)
        if content_type is None:
            del headers["Content-Type"]
        else:
            headers["Content-Type"] = content_type
        corpus.append(HostileRequest(f"Content-Type {label}", valid, headers, Expect.REFUSED))
    body = _json([event(deal())])
    corpus.append(
        HostileRequest(
            "header names in lower case, charset given",
            body,
            {k.lower(): v for k, v in signed_headers(body).items()}
            | {"content-type": "application/json; charset=utf-8"},
            Expect.ACCEPTED,
            frozenset({str(json.loads(body)[0]["objectId"])}),
        )
    )
    many = signed_headers(valid) | {f"X-Filler-{i}": "x" for i in range(200)}
    corpus.append(HostileRequest("200 extra headers", valid, many, Expect.REFUSED))
    corpus.append(
        HostileRequest(
            "one header of 20,000 bytes",
            valid,
            signed_headers(valid) | {"X-Big": "x" * 20_000},
            Expect.REFUSED,
        )
    )
    corpus.append(
        HostileRequest(
            "two v3 signature headers",
            valid,
            signed_headers(valid),
            Expect.FORGED,
            raw=_raw_request(
                valid,
                [*signed_headers(valid).items(), ("X-HubSpot-Signature-v3", "another")],
            ),
        )
    )

    # --- bodies: shapes, unicode, numbers, sizes ------------------------------------------------
    # Refused whole: not a JSON array of objects we can read.
    for label, raw_body in {
        "not JSON": b"deals lost: 3",
        "truncated JSON": valid[:-3],
        "JSON object, not an array": json.dumps(event(1)).encode(),
        "empty body": b"",
        "invalid UTF-8": b'[{"propertyValue":"\xff\xfe"}]',
        "nested 100,000 deep": b"[" * 100_000 + b"]" * 100_000,
        "objects nested 50,000 deep": b'[{"a":' * 50_000 + b"1" + b"}" * 50_000 + b"]",
        "trailing garbage": valid + b"]]",
        "NaN outside an array": b"NaN",
    }.items():
        corpus.append(signed(f"signed, {label}", raw_body, Expect.REFUSED))

    # Accepted: the good events queued, each bad one refused on its own.
    def mixed(label: str, bad: dict[str, object] | bytes, **options: object) -> None:
        before, after = deal(), deal()
        middle = bad if isinstance(bad, bytes) else _json([bad], **options)[1:-1]
        body = b"[" + _json([event(before)])[1:-1] + b"," + middle + b"," + _json([event(after)])[1:-1] + b"]"
        corpus.append(
            signed(f"signed, {label}, between two good events", body, Expect.ACCEPTED, (before, after))
        )

    for label, bad_id in [
        ("objectId as text", "ten"),
        ("objectId Arabic-Indic digits", "\u0661\u0662\u0663"),
        ("objectId superscript", "\u00b2"),
        ("objectId negative", -5),
        ("objectId zero", 0),
        ("objectId an email", PERSONAL_DATA[0]),
        ("objectId over 2^63", 2**64),
        ("objectId a float", 12.5),
        ("objectId 5,000 digits in a string", "9" * 5000),
        ("objectId null", None),
        ("objectId an object", {"id": 1}),
    ]:
        mixed(label, event(bad_id))
    mixed(
        "objectId a 5,000-digit number",
        b'{"subscriptionType":"deal.creation","objectId":' + b"7" * 5000 + b"}",
    )
    for name in ("occurredAt", "attemptNumber"):
        for label, value in [
            ("text", "yesterday"),
            ("superscript", "\u00b2"),
            ("huge", 10**30),
            ("float", 1.5),
            ("negative", -1),
            ("Arabic-Indic digits", "\u0661"),
        ]:
            mixed(f"{name} {label}", event(deal(), **{name: value}))
    mixed("subscriptionType missing", {k: v for k, v in event(deal()).items() if k != "subscriptionType"})
    mixed("a number, not an event", b"1")
    mixed("null, not an event", b"null")
    mixed("an array, not an event", b"[[[]]]")
    mixed(
        "merge naming 20,000 ids",
        {"subscriptionType": "deal.merge", "objectId": deal(), "mergedObjectIds": list(range(1, 20_001))},
    )
    mixed("propertyValue an object", event(deal(), propertyValue={"x": [1]}))

    # Accepted whole: odd but readable.
    def accepted(label: str, overrides: dict[str, object], *, ensure_ascii: bool = True) -> None:
        deal_id = deal()
        body = _json([event(deal_id, **overrides)], ensure_ascii=ensure_ascii)
        corpus.append(signed(f"signed, {label}", body, Expect.ACCEPTED, (deal_id,)))

    accepted(
        "unicode values", {"propertyValue": f"Prix élevé — 価格 🙃 {PERSONAL_DATA[1]}"}, ensure_ascii=False
    )
    accepted("escaped unicode, NUL and bidi override", {"propertyValue": "\u0000\ud83d\ude43\u202e"})
    accepted("a lone surrogate (a reason cut mid-emoji)", {"propertyValue": f"{PERSONAL_DATA[0]} \ud83d"})
    accepted("a lone low surrogate", {"propertyValue": "\udc00"})
    accepted("an email and a phone in the value", {"propertyValue": f"{PERSONAL_DATA[0]} {PERSONAL_DATA[2]}"})
    accepted("NaN and Infinity in fields no one reads", {"changeFlag": float("nan"), "x": float("inf")})
    padded = deal()
    corpus.append(
        signed(
            "signed, objectId with leading zeros", _json([event(f"000{padded}")]), Expect.ACCEPTED, (padded,)
        )
    )
    last_wins = deal()
    duplicate_keys = (
        b'[{"subscriptionType":"deal.propertyChange","propertyName":"dealstage","objectId":1,'
        b'"objectId":' + str(last_wins).encode() + b"}]"
    )
    corpus.append(signed("signed, duplicate keys", duplicate_keys, Expect.ACCEPTED, (last_wins,)))
    corpus.append(
        signed("signed, UTF-8 byte order mark", b"\xef\xbb\xbf" + _json([event(deal())]), Expect.EITHER)
    )
    corpus.append(signed("signed, UTF-16 body", json.dumps([event(deal())]).encode("utf-16"), Expect.EITHER))
    for label, raw_body in {
        "empty array": b"[]",
        "unknown event type": _json([event(1, subscriptionType="ticket.propertyChange")]),
        "unknown generic object type": _json(
            [event(1, subscriptionType="object.propertyChange", objectTypeId="2-99")]
        ),
        "array of 1,000 unknown events": _json([{"subscriptionType": "x.y"}] * 1000),
    }.items():
        corpus.append(signed(f"signed, {label}", raw_body, Expect.ACCEPTED))
    batch = [deal() for _ in range(150)]
    corpus.append(
        signed(
            "signed, 150 events (over HubSpot's 100)",
            _json([event(d, eventId=d) for d in batch]),
            Expect.ACCEPTED,
            tuple(batch),
        )
    )
    corpus.append(
        signed(
            "signed, 2 MB body", _json([event(deal(), propertyValue="x" * (2 * 1024 * 1024))]), Expect.REFUSED
        )
    )

    # --- framing ---------------------------------------------------------------------------------
    good = _json([event(deal())])
    wire_headers = list(signed_headers(good).items())
    corpus += [
        # The whole signed body arrives, then the sender closes: accepting it is as safe as refusing.
        HostileRequest(
            "framing: Content-Length longer than the body",
            good,
            {},
            Expect.EITHER,
            raw=_raw_request(good, wire_headers, content_length=str(len(good) + 50)),
        ),
        HostileRequest(
            "framing: upload cut in half",
            good,
            {},
            Expect.REFUSED,
            raw=_raw_request(good, wire_headers)[: -len(good) // 2],
        ),
        HostileRequest(
            "framing: chunked upload cut in half",
            good,
            {},
            Expect.REFUSED,
            raw=_raw_request(
                _chunked(good), [*wire_headers, ("Transfer-Encoding", "chunked")], content_length=None
            )[: -len(good) // 2],
        ),
        HostileRequest(
            "framing: Content-Length negative",
            good,
            {},
            Expect.REFUSED,
            raw=_raw_request(good, wire_headers, content_length="-1"),
        ),
        HostileRequest(
            "framing: Content-Length not a number",
            good,
            {},
            Expect.REFUSED,
            raw=_raw_request(good, wire_headers, content_length="12abc"),
        ),
        HostileRequest(
            "framing: Content-Length 10^20",
            good,
            {},
            Expect.REFUSED,
            raw=_raw_request(good, wire_headers, content_length="1" + "0" * 20),
        ),
        HostileRequest(
            "framing: two different Content-Lengths",
            good,
            {},
            Expect.REFUSED,
            raw=_raw_request(good, [*wire_headers, ("Content-Length", "3")]),
        ),
        HostileRequest(
            "framing: chunked and Content-Length",
            good,
            {},
            Expect.REFUSED,
            raw=_raw_request(
                _chunked(good),
                [*wire_headers, ("Transfer-Encoding", "chunked")],
                content_length=str(len(good)),
            ),
        ),
        HostileRequest(
            "framing: bad chunk size",
            good,
            {},
            Expect.REFUSED,
            raw=_raw_request(
                b"zz\r\n" + good + b"\r\n0\r\n\r\n",
                [*wire_headers, ("Transfer-Encoding", "chunked")],
                content_length=None,
            ),
        ),
        HostileRequest(
            "framing: chunked body over the size limit",
            good,
            {},
            Expect.REFUSED,
            raw=_raw_request(
                _chunked(b"[" + b" " * (2 * 1024 * 1024) + b"]"),
                [*wire_headers, ("Transfer-Encoding", "chunked")],
                content_length=None,
            ),
        ),
        HostileRequest(
            "framing: Transfer-Encoding gzip",
            good,
            {},
            Expect.REFUSED,
            raw=_raw_request(good, [*wire_headers, ("Transfer-Encoding", "gzip")], content_length=None),
        ),
        HostileRequest(
            "framing: NUL in a header value",
            good,
            {},
            Expect.REFUSED,
            raw=_raw_request(good, [*wire_headers, ("X-Note", "a\x00b")]),
        ),
        HostileRequest(
            "framing: bytes over 0x7f in a header value",
            good,
            {},
            Expect.EITHER,
            raw=_raw_request(good, [*wire_headers, ("X-Note", "caf\udce9")]),
        ),
        HostileRequest(
            "framing: no Host header",
            good,
            {},
            Expect.EITHER,
            raw=_raw_request(good, wire_headers, host=False),
        ),
        HostileRequest(
            "framing: request line over 8 KB",
            good,
            signed_headers(good),
            Expect.REFUSED,
            target=WEBHOOK_PATH + "?" + "a" * 9000,
        ),
        HostileRequest("framing: GET on the webhook path", b"", {}, Expect.REFUSED, method="GET"),
        HostileRequest("framing: unknown method", good, signed_headers(good), Expect.REFUSED, method="BREW"),
        HostileRequest(
            "framing: path with an encoded NUL",
            good,
            signed_headers(good),
            Expect.REFUSED,
            target="/webhooks/hubspot%00",
        ),
        HostileRequest(
            "framing: garbage instead of a request line",
            b"",
            {},
            Expect.REFUSED,
            raw=b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,
        ),
    ]
    return corpus


def _chunked(body: bytes) -> bytes:
    return f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"


def _raw_request(
    body: bytes,
    headers: list[tuple[str, str]],
    *,
    content_length: str | None = "",
    host: bool = True,
) -> bytes:
    """A POST to the webhook path written out by hand; `content_length` "" means the true one,
    None none at all."""
    lines = [f"POST {WEBHOOK_PATH} HTTP/1.1"]
    if host:
        lines.append("Host: {host}")
    lines.append("Connection: close")
    if content_length is not None:
        lines.append(f"Content-Length: {content_length or len(body)}")
    lines += [f"{name}: {value}" for name, value in headers]
    return "\r\n".join(lines).encode("utf-8", "surrogateescape") + b"\r\n\r\n" + body
