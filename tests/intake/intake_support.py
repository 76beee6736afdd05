"""Helpers for the intake tests: signed requests built with HubSpot's own SDK helper, and a reader
of what really landed in the Celery broker queue in Redis."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from typing import Any

import redis
from flask.testing import FlaskClient
from hubspot.utils.signature import Signature

from handoff_worker.celery_app import HANDOFF_QUEUE, queue_key
from handoff_worker.domain.nurture import DealRules, LeadRules, NurtureRules
from handoff_worker.settings import Settings

SECRET = "11111111-2222-3333-4444-555555555555"
APP_ID = "4242"
LOCAL_URI = "http://localhost/webhooks/hubspot"
RULES = NurtureRules(
    reasons=(),
    deals=DealRules(reason_property="lost_reason_pick"),
    leads=LeadRules(status_property="hs_lead_status", reason_property="dq_reason"),
)


def now_ms() -> str:
    return str(int(time.time() * 1000))


def v3_headers(
    body: bytes, *, uri: str = LOCAL_URI, secret: str = SECRET, timestamp: str | None = None
) -> dict[str, str]:
    """Headers as HubSpot would send them, signed by the SDK (not by the code under test)."""
    timestamp = timestamp or now_ms()
    sig = Signature.get_signature(
        secret, body.decode(), "v3", http_uri=uri, http_method="POST", timestamp=timestamp
    )
    return {
        "Content-Type": "application/json",
        "X-HubSpot-Signature-v3": sig,
        "X-HubSpot-Request-Timestamp": timestamp,
    }


_event_counter = iter(range(1, 10**9))


def deal_stage_event(
    deal_id: int, *, stage: str = "closedlost", attempt: int = 0, **extra: Any
) -> dict[str, Any]:
    event_number = next(_event_counter)
    event = {
        "eventId": 1000 + event_number,
        "subscriptionId": 77,
        "portalId": 123,
        "appId": int(APP_ID),
        "occurredAt": 1_700_000_000_000 + event_number,
        "subscriptionType": "deal.propertyChange",
        "attemptNumber": attempt,
        "objectId": deal_id,
        "propertyName": "dealstage",
        "propertyValue": stage,
        "changeSource": "CRM_UI",
    }
    event.update(extra)
    return event


def encode(events: list[dict[str, Any]]) -> bytes:
    return json.dumps(events).encode()


@dataclass(frozen=True)
class QueuedTask:
    name: str
    kwargs: dict[str, Any]
    task_id: str


def queued_tasks(conn: redis.Redis, queue: str = HANDOFF_QUEUE) -> list[QueuedTask]:
    """Decode the kombu messages waiting in the broker list, oldest first."""
    tasks = []
    for raw in reversed(conn.lrange(queue_key(queue), 0, -1)):
        message = json.loads(raw)
        assert message["properties"]["body_encoding"] == "base64"
        _args, kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        tasks.append(QueuedTask(message["headers"]["task"], kwargs, message["headers"]["id"]))
    return tasks


def make_settings(redis_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "hubspot_client_secrets": (SECRET,),
        "hubspot_app_id": APP_ID,
        "redis_url": redis_url,
    }
    values.update(overrides)
    return Settings(**values)


def post(client: FlaskClient, body: bytes, headers: dict[str, str] | None = None, **kwargs: Any) -> Any:
    return client.post(
        "/webhooks/hubspot", data=body, headers=v3_headers(body) if headers is None else headers, **kwargs
    )
