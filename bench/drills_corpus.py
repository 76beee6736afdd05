"""Hostile and malformed webhook requests for the intake: what each is and what it must be answered.

Every request carries a label, its body and headers, and whether it is forged (then the intake
must refuse it with 401). Signed-but-malformed requests may be refused (4xx) or accepted and
dropped (204); none may cause a 5xx.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class HostileRequest:
    label: str
    body: bytes
    headers: dict[str, str]
    forged: bool


def sign_v3(secret: str, url: str, body: bytes, timestamp_ms: int) -> str:
    message = b"POST" + url.encode() + body + str(timestamp_ms).encode()
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


def _event(**overrides: object) -> dict[str, object]:
    event: dict[str, object] = {
        "eventId": 1,
        "subscriptionId": 1,
        "portalId": 1,
        "appId": 424242,
        "occurredAt": int(time.time() * 1000),
        "subscriptionType": "deal.propertyChange",
        "attemptNumber": 0,
        "objectId": 10_000,
        "propertyName": "dealstage",
        "propertyValue": "closedlost",
        "changeSource": "CRM_UI",
        "sourceId": "userId:1",
    }
    event.update(overrides)
    return event


def build_corpus(secret: str, url: str) -> list[HostileRequest]:
    now = int(time.time() * 1000)

    def signed(
        label: str, body: bytes, *, at: int = now, forged: bool = False, key: str = secret
    ) -> HostileRequest:
        headers = {
            "Content-Type": "application/json",
            "X-HubSpot-Signature-v3": sign_v3(key, url, body, at),
            "X-HubSpot-Request-Timestamp": str(at),
        }
        return HostileRequest(label, body, headers, forged)

    valid_body = json.dumps([_event()]).encode()
    shapes: dict[str, bytes] = {
        "not JSON": b"deals lost: 3",
        "truncated JSON": valid_body[:-3],
        "JSON object, not an array": json.dumps(_event()).encode(),
        "array of numbers": b"[1, 2, 3]",
        "array of nulls": b"[null]",
        "nested arrays": b"[[[[[[]]]]]]",
        "deeply nested object": b"[" + b'{"a":' * 500 + b"1" + b"}" * 500 + b"]",
        "objectId as text": json.dumps([_event(objectId="ten")]).encode(),
        "objectId negative": json.dumps([_event(objectId=-5)]).encode(),
        "objectId huge": json.dumps([_event(objectId=10**40)]).encode(),
        "occurredAt as text": json.dumps([_event(occurredAt="yesterday")]).encode(),
        "subscriptionType missing": json.dumps(
            [{k: v for k, v in _event().items() if k != "subscriptionType"}]
        ).encode(),
        "unknown event type": json.dumps([_event(subscriptionType="ticket.propertyChange")]).encode(),
        "propertyValue an object": json.dumps([_event(propertyValue={"x": [1]})]).encode(),
        "unicode values": json.dumps(
            [_event(propertyValue="Prix élevé — 価格 🙃")], ensure_ascii=False
        ).encode(),
        "escaped unicode and NUL": json.dumps([_event(propertyValue="\u0000\ud83d\ude43\u202e")]).encode(),
        "lone surrogate escape": b'[{"subscriptionType":"deal.propertyChange","propertyValue":"\\ud800"}]',
        "invalid UTF-8": b'[{"propertyValue":"\xff\xfe"}]',
        "empty body": b"",
        "empty array": b"[]",
        "150 events (over HubSpot's 100)": json.dumps(
            [_event(eventId=i, objectId=20_000 + i) for i in range(150)]
        ).encode(),
        "2 MB body": json.dumps([_event(propertyValue="x" * (2 * 1024 * 1024))]).encode(),
    }
    corpus = [signed(f"signed, {label}", body) for label, body in shapes.items()]
    corpus += [
        signed("forged: signed with another secret", valid_body, forged=True, key=secret + "-wrong"),
        # A replay, and a clock no one should trust: refused like forgeries.
        signed("forged: stale timestamp (10 min old)", valid_body, at=now - 10 * 60 * 1000, forged=True),
        signed("forged: future timestamp (10 min ahead)", valid_body, at=now + 10 * 60 * 1000, forged=True),
        HostileRequest(
            "forged: no signature headers", valid_body, {"Content-Type": "application/json"}, True
        ),
        HostileRequest(
            "forged: v1 signature only",
            valid_body,
            {
                "Content-Type": "application/json",
                "X-HubSpot-Signature": hashlib.sha256(secret.encode() + valid_body).hexdigest(),
                "X-HubSpot-Signature-Version": "v1",
            },
            True,
        ),
        HostileRequest(
            "forged: timestamp not a number",
            valid_body,
            {
                "Content-Type": "application/json",
                "X-HubSpot-Signature-v3": sign_v3(secret, url, valid_body, now),
                "X-HubSpot-Request-Timestamp": "soon",
            },
            True,
        ),
        HostileRequest(
            "forged: signature for another body",
            valid_body + b" ",
            {
                "Content-Type": "application/json",
                "X-HubSpot-Signature-v3": sign_v3(secret, url, valid_body, now),
                "X-HubSpot-Request-Timestamp": str(now),
            },
            True,
        ),
        HostileRequest(
            "forged: signature garbage",
            valid_body,
            {
                "Content-Type": "application/json",
                "X-HubSpot-Signature-v3": "%%%not-base64%%%" * 20,
                "X-HubSpot-Request-Timestamp": str(now),
            },
            True,
        ),
    ]
    return corpus
