"""The Celery tasks in real worker processes: enqueue by name, let the worker run, watch HubSpot.

Each test starts its own worker (prefork, two children) on the test's Redis database, pointed at
the sandbox and the test rules, and waits with a bounded poll for the sandbox to converge.
"""

from __future__ import annotations

import os
import signal

import pytest
import redis
from celery import Celery
from worker_support import Worker

from handoff_worker.celery_app import (
    HANDOFF_QUEUE,
    TASK_FORGET_RECORD,
    TASK_HANDOFF_CONTACT,
    TASK_HANDOFF_DEAL,
    queue_key,
)
from handoff_worker.domain.models import RecordKind
from handoff_worker.handoff.audit import recent_audits
from handoff_worker.handoff.ledger import Ledger
from handoff_worker.pending import pending_key
from handoff_worker.sandbox.testing import SandboxServer
from handoff_worker.testing import children_of, wait_until

pytestmark = pytest.mark.slow


def enrolled(hub: SandboxServer, workflow_id: str) -> list[str]:
    return sorted(hub.control.enrollments()[workflow_id]["contactIds"])


def enroll_outcomes(hub: SandboxServer, workflow_id: str) -> list[str]:
    return [a["outcome"] for a in hub.control.enrollments()[workflow_id]["attempts"]]


def idle(client: redis.Redis) -> bool:
    """Nothing queued, nothing held: every delivery has run."""
    return not client.llen(queue_key(HANDOFF_QUEUE)) and not list(client.scan_iter("handoff:lock:*"))


def test_redelivered_and_parallel_tasks_enroll_exactly_once(
    hub: SandboxServer, worker: Worker, queue: Celery, redis_conn: redis.Redis
) -> None:
    hub.control.lose_deal("2001", "Pricing")
    hub.control.set_faults(latency_ms=40)  # long enough for the copies to overlap
    for trigger in ("webhook", "webhook-duplicate", "resync"):
        queue.send_task(TASK_HANDOFF_DEAL, kwargs={"deal_id": "2001", "trigger": trigger})
    wait_until(lambda: enrolled(hub, "5102") == ["3001", "3002"], what="both contacts enrolled")
    wait_until(lambda: len(recent_audits(redis_conn)) >= 3 and idle(redis_conn), what="every copy to run")
    queue.send_task(TASK_HANDOFF_DEAL, kwargs={"deal_id": "2001", "trigger": "late-redelivery"})
    wait_until(lambda: len(recent_audits(redis_conn)) >= 4 and idle(redis_conn), what="the late copy")
    assert enroll_outcomes(hub, "5102") == ["enrolled", "enrolled"]
    assert [a["outcome"] for a in recent_audits(redis_conn)].count("handed_off") >= 1


def test_task_releases_pending_and_waits_for_a_reason(
    hub: SandboxServer, worker: Worker, queue: Celery, redis_conn: redis.Redis
) -> None:
    hub.control.lose_deal("2001", None)
    redis_conn.set(pending_key("deal", "2001"), "q:live:intake-task-2001")
    queue.send_task(
        TASK_HANDOFF_DEAL, kwargs={"deal_id": "2001", "trigger": "webhook"}, task_id="intake-task-2001"
    )
    wait_until(lambda: bool(hub.control.associated_ids("deals", "2001", "tasks")), what="the owner task")
    assert not redis_conn.exists(pending_key("deal", "2001"))
    hub.control.rep_update("deals", "2001", {"closed_lost_reason": "Pricing"})
    queue.send_task(TASK_HANDOFF_DEAL, kwargs={"deal_id": "2001", "trigger": "webhook"})
    wait_until(lambda: enrolled(hub, "5102") == ["3001", "3002"], what="the handoff after the reason")
    assert len(hub.control.associated_ids("deals", "2001", "tasks")) == 1


def test_contact_task_and_forget(
    hub: SandboxServer, worker: Worker, queue: Celery, redis_conn: redis.Redis
) -> None:
    hub.control.rep_update("contacts", "3006", {"hs_lead_status": "UNQUALIFIED"})
    queue.send_task(TASK_HANDOFF_CONTACT, kwargs={"contact_id": "3006", "trigger": "webhook"})
    wait_until(
        lambda: Ledger(redis_conn).get_waiting(RecordKind.CONTACT, "3006") is not None, what="waiting mark"
    )
    queue.send_task(
        TASK_FORGET_RECORD,
        kwargs={"object_type": "contacts", "object_id": "3006", "merged_into": None, "event": "deletion"},
    )
    wait_until(
        lambda: Ledger(redis_conn).get_waiting(RecordKind.CONTACT, "3006") is None,
        what="the record forgotten",
    )


def test_worker_killed_mid_handoff_is_finished_by_the_redelivery(
    hub: SandboxServer, worker: Worker, queue: Celery, redis_conn: redis.Redis
) -> None:
    hub.control.lose_deal("2001", "Pricing")
    # Slow enrollments: the kill lands after the first contact's enrollment, during the second.
    hub.control.set_faults(latency_ms=1500, path_prefixes=["/automation/"])
    queue.send_task(TASK_HANDOFF_DEAL, kwargs={"deal_id": "2001", "trigger": "webhook"})
    wait_until(lambda: len(enroll_outcomes(hub, "5102")) == 1, what="the first enrollment")
    children = children_of(worker.process.pid)
    assert children, "the worker has no pool processes"
    for child in children:
        os.kill(child, signal.SIGKILL)
    hub.control.clear_faults()
    # The message was not acknowledged: it goes back to the queue and a new child finishes the job
    # once the dead child's lock has expired.
    wait_until(
        lambda: any(a["outcome"] == "handed_off" for a in recent_audits(redis_conn)),
        timeout=60,
        what="the redelivered handoff",
    )
    assert enrolled(hub, "5102") == ["3001", "3002"]
    outcomes = enroll_outcomes(hub, "5102")
    assert outcomes.count("enrolled") == 2  # a repeated call is refused by HubSpot, never doubled
    assert {hub.control.object("contacts", c)["properties"]["lifecyclestage"] for c in ("3001", "3002")} == {
        "lead"
    }
