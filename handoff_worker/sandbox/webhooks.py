"""Signed webhook deliveries the way HubSpot sends them: batched, retried, 10 in flight."""

from __future__ import annotations

import base64
import hashlib
import heapq
import hmac
import itertools
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import requests

from handoff_worker.sandbox.records import SINGULAR, Change

MAX_EVENTS_PER_REQUEST = 99  # HubSpot sends fewer than 100 events per request
DELIVERY_TIMEOUT_S = 5.0
# A published, well-known value so a fresh checkout signs and verifies out of the box; not a credential.
DEFAULT_CLIENT_SECRET = "sandbox-client-secret"  # noqa: S105
MAX_IN_FLIGHT = 10
# HubSpot spreads 10 attempts over about a day; the schedule is configurable for tests and drills.
DEFAULT_RETRY_DELAYS_S = (60.0, 120.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0)
DEFAULT_WATCHED = {
    "deals": ["dealstage", "closed_lost_reason"],
    "contacts": ["hs_lead_status", "handoff_unqualified_reason", "lifecyclestage"],
}


def sign_v3(secret: str, method: str, uri: str, body: str, timestamp_ms: str) -> str:
    message = f"{method}{uri}{body}{timestamp_ms}".encode()
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


def sign_v1(secret: str, body: str) -> str:
    return hashlib.sha256(f"{secret}{body}".encode()).hexdigest()


@dataclass
class WebhookSettings:
    url: str | None = None
    client_secret: str = DEFAULT_CLIENT_SECRET
    app_id: int = 424242
    portal_id: int = 62515
    retry_delays_s: list[float] = field(default_factory=lambda: list(DEFAULT_RETRY_DELAYS_S))
    batch_window_s: float = 0.05
    watched: dict[str, list[str]] = field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_WATCHED.items()}
    )


@dataclass
class Delivery:
    id: int
    events: list[dict[str, Any]]
    state: str = "pending"  # pending | delivered | failed
    attempts: list[dict[str, Any]] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state,
            "eventIds": [e["eventId"] for e in self.events],
            "subscriptionTypes": sorted({e["subscriptionType"] for e in self.events}),
            "attempts": list(self.attempts),
            "events": self.events,
        }


class WebhookDispatcher:
    """Turns portal changes into events and delivers them on background threads."""

    def __init__(self, settings: WebhookSettings) -> None:
        self.settings = settings
        self._lock = threading.Condition()
        self._event_ids = itertools.count(1)
        self._delivery_ids = itertools.count(1)
        self._buffer: list[dict[str, Any]] = []
        self._buffer_since = 0.0
        self._due: list[tuple[float, int, Delivery]] = []  # heap of (when, id, delivery)
        self.deliveries: dict[int, Delivery] = {}
        self._in_flight = 0
        self._stopping = False
        self._pool = ThreadPoolExecutor(MAX_IN_FLIGHT, thread_name_prefix="sandbox-webhook")
        self._session = requests.Session()
        self._thread = threading.Thread(target=self._run, name="sandbox-webhook-scheduler", daemon=True)
        self._thread.start()

    # ----- producing events ---------------------------------------------------------------------

    def publish(self, changes: list[Change]) -> None:
        if not changes or not self.settings.url:
            return
        events = [e for e in (self._event(c) for c in changes) if e is not None]
        if not events:
            return
        with self._lock:
            if not self._buffer:
                self._buffer_since = time.monotonic()
            self._buffer.extend(events)
            self._lock.notify_all()

    def _event(self, change: Change) -> dict[str, Any] | None:
        if change.object_type not in ("deals", "contacts"):
            return None
        if change.kind == "propertyChange" and change.property_name not in self.settings.watched.get(
            change.object_type, []
        ):
            return None
        subscription_type = f"{SINGULAR[change.object_type]}.{change.kind}"
        event: dict[str, Any] = {
            "eventId": next(self._event_ids),
            "subscriptionId": _subscription_id(subscription_type, change.property_name),
            "portalId": self.settings.portal_id,
            "appId": self.settings.app_id,
            "occurredAt": change.occurred_ms,
            "subscriptionType": subscription_type,
            "attemptNumber": 0,
            "objectId": int(change.object_id),
            "changeFlag": _change_flag(change.kind),
            "changeSource": change.source,
            "sourceId": str(self.settings.app_id) if change.source == "INTEGRATION" else "userId:1",
        }
        if change.kind == "propertyChange":
            event["propertyName"] = change.property_name
            event["propertyValue"] = change.property_value
        event.update(change.extra)
        return event

    # ----- delivering ---------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._lock:
                if self._stopping:
                    return
                self._flush_buffer_if_due()
                ready = self._pop_ready()
                if not ready:
                    self._lock.wait(timeout=self._sleep_time())
                    continue
            for delivery in ready:
                self._pool.submit(self._attempt, delivery)

    def _flush_buffer_if_due(self) -> None:
        if not self._buffer or time.monotonic() - self._buffer_since < self.settings.batch_window_s:
            return
        while self._buffer:
            chunk, self._buffer = self._buffer[:MAX_EVENTS_PER_REQUEST], self._buffer[MAX_EVENTS_PER_REQUEST:]
            delivery = Delivery(next(self._delivery_ids), chunk)
            self.deliveries[delivery.id] = delivery
            heapq.heappush(self._due, (time.monotonic(), delivery.id, delivery))

    def _pop_ready(self) -> list[Delivery]:
        ready = []
        now = time.monotonic()
        while self._due and self._due[0][0] <= now and self._in_flight < MAX_IN_FLIGHT:
            ready.append(heapq.heappop(self._due)[2])
            self._in_flight += 1
        return ready

    def _sleep_time(self) -> float:
        waits = [0.5]
        if self._buffer:
            waits.append(self._buffer_since + self.settings.batch_window_s - time.monotonic())
        if self._due and self._in_flight < MAX_IN_FLIGHT:
            waits.append(self._due[0][0] - time.monotonic())
        return max(min(waits), 0.001)

    def _attempt(self, delivery: Delivery) -> None:
        attempt_number = len(delivery.attempts)
        outcome = self._post(delivery, attempt_number)
        with self._lock:
            self._in_flight -= 1
            if self.deliveries.get(delivery.id) is not delivery:  # forgotten by a reset meanwhile
                self._lock.notify_all()
                return
            delivery.attempts.append(outcome)
            if outcome.get("ok"):
                delivery.state = "delivered"
            elif attempt_number + 1 >= len(self.settings.retry_delays_s) + 1:
                delivery.state = "failed"
            else:
                delay = self.settings.retry_delays_s[attempt_number]
                heapq.heappush(self._due, (time.monotonic() + delay, delivery.id, delivery))
            self._lock.notify_all()

    def _post(self, delivery: Delivery, attempt_number: int) -> dict[str, Any]:
        url = self.settings.url
        outcome: dict[str, Any] = {"attemptNumber": attempt_number, "at": int(time.time() * 1000)}
        if not url:
            return outcome | {"ok": False, "error": "no webhook URL configured"}
        body = json.dumps([e | {"attemptNumber": attempt_number} for e in delivery.events])
        timestamp = str(int(time.time() * 1000))
        secret = self.settings.client_secret
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "HubSpot Connect 2.0 (http://dev.hubspot.com/) (sandbox)",
            "X-HubSpot-Signature-v3": sign_v3(secret, "POST", url, body, timestamp),
            "X-HubSpot-Request-Timestamp": timestamp,
            "X-HubSpot-Signature": sign_v1(secret, body),
            "X-HubSpot-Signature-Version": "v1",
        }
        try:
            response = self._session.post(
                url, data=body.encode(), headers=headers, timeout=DELIVERY_TIMEOUT_S
            )
        except requests.RequestException as exc:
            return outcome | {"ok": False, "error": type(exc).__name__}
        return outcome | {"ok": response.status_code < 400, "status": response.status_code}

    # ----- inspection ---------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        with self._lock:
            deliveries = [d.describe() for d in self.deliveries.values()]
            return {
                "pending": sum(d["state"] == "pending" for d in deliveries) + (1 if self._buffer else 0),
                "delivered": sum(d["state"] == "delivered" for d in deliveries),
                "failed": sum(d["state"] == "failed" for d in deliveries),
                "failedAttempts": sum(not a["ok"] for d in deliveries for a in d["attempts"]),
                "deliveries": deliveries,
            }

    def wait_idle(self, timeout_s: float) -> bool:
        """Block until nothing is buffered or pending; False if `timeout_s` ran out first."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while self._buffer or any(d.state == "pending" for d in self.deliveries.values()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(timeout=min(remaining, 0.05))
            return True

    def forget(self) -> None:
        """Drop every buffered event and recorded delivery (a reset); in-flight posts still finish."""
        with self._lock:
            self._buffer.clear()
            self._due.clear()
            for delivery in self.deliveries.values():
                if delivery.state == "pending":
                    delivery.state = "failed"
            self.deliveries.clear()
            self._lock.notify_all()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        self._thread.join(timeout=2)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._session.close()


def _subscription_id(subscription_type: str, property_name: str | None) -> int:
    # A stable id per subscription, as each HubSpot subscription watches one event kind/property.
    digest = hashlib.sha256(f"{subscription_type}:{property_name or ''}".encode()).hexdigest()
    return 100_000 + int(digest[:6], 16) % 900_000


def _change_flag(kind: str) -> str:
    return {"creation": "CREATED", "deletion": "DELETED", "merge": "MERGED"}.get(kind, "PROPERTY_CHANGE")
