"""Records already in Redis keep working: kinds and outcomes are stored as the same text as before
they were typed. Sandbox over HTTP, real SDK gateway, real Redis."""

from __future__ import annotations

import json

import redis

from handoff_worker.domain.models import RecordKind
from handoff_worker.handoff.audit import AUDIT_KEY
from handoff_worker.handoff.deadletter import DEADLETTER_KEY, list_failures
from handoff_worker.handoff.engine import HandoffEngine
from handoff_worker.handoff.inline import replay_failures
from handoff_worker.handoff.ledger import WAITING_INDEX, Ledger, waiting_key
from handoff_worker.handoff.run_record import Outcome
from handoff_worker.sandbox.testing import SandboxServer


def test_waiting_record_and_dead_letter_stored_as_text_are_read_and_replayed(
    hub: SandboxServer, engine: HandoffEngine, redis_conn: redis.Redis
) -> None:
    waiting = {
        "kind": "deal",
        "object_id": "2001",
        "since": "2026-11-30T10:00:00+00:00",
        "loss_id": "deal:2001:1",
        "name": "Acme expansion",
        "owner_id": "7001",
        "escalated": False,
    }
    redis_conn.set(waiting_key(RecordKind.DEAL, "2001"), json.dumps(waiting))
    redis_conn.sadd(WAITING_INDEX, "deal:2001")
    failure = {
        "kind": "deal",
        "object_id": "2001",
        "error": "HubSpot create task failed with HTTP 403",
        "attempts": 1,
        "first_failed_at": "2026-11-30T10:00:00+00:00",
        "last_failed_at": "2026-11-30T10:00:00+00:00",
        "trigger": "webhook",
        "permanent": True,
    }
    redis_conn.hset(DEADLETTER_KEY, "deal:2001", json.dumps(failure))

    (read_waiting,) = Ledger(redis_conn).list_waiting()
    assert read_waiting.kind is RecordKind.DEAL and read_waiting.loss_id == "deal:2001:1"
    (read_failure,) = list_failures(redis_conn)
    assert read_failure.kind is RecordKind.DEAL and read_failure.key == "deal:2001"

    hub.control.lose_deal("2001", "Pricing")  # the reason is filled in, then ops replay
    tally = replay_failures(engine, [read_failure])

    assert (tally.handed_off, tally.failed) == (1, [])
    assert list_failures(redis_conn) == [] and Ledger(redis_conn).list_waiting() == []
    stored = json.loads(str(redis_conn.lindex(AUDIT_KEY, 0)))
    assert (stored["kind"], stored["outcome"]) == ("deal", "handed_off")
    assert {c["outcome"] for c in stored["contacts"].values()} == {"recycled"}
    assert Outcome(stored["outcome"]) is Outcome.HANDED_OFF
