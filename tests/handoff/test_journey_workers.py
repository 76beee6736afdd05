"""Two deals of one contact lost at the same moment, handed off by real Celery worker processes in
parallel: the contact's lock makes their decisions take turns, and HubSpot shows one enrollment."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from celery import Celery
from test_journey_engine import JOURNEY_RULES, enrollments_of, second_deal_of
from worker_support import Worker

from handoff_worker.celery_app import TASK_HANDOFF_DEAL
from handoff_worker.handoff.audit import recent_audits
from handoff_worker.sandbox.testing import SandboxServer
from handoff_worker.testing import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def rules_path(tmp_path: Path) -> Path:
    path = tmp_path / "nurture.yaml"
    path.write_text(JOURNEY_RULES.format(policy="keep"))
    return path


def test_two_deals_of_one_contact_in_two_worker_processes_enroll_it_once(
    hub: SandboxServer, worker: Worker, queue: Celery, redis_conn: redis.Redis
) -> None:
    other = second_deal_of(hub, "3001")
    hub.control.lose_deal("2001", "Pricing")
    hub.control.lose_deal(other, "Pricing")
    hub.control.set_faults(latency_ms=40)  # long enough for the two handoffs to overlap
    for deal_id in ("2001", other):
        queue.send_task(TASK_HANDOFF_DEAL, kwargs={"deal_id": deal_id, "trigger": "webhook"})

    def both_handed_off() -> bool:
        done = {a["object_id"] for a in recent_audits(redis_conn) if a["outcome"] == "handed_off"}
        return done >= {"2001", other}

    wait_until(both_handed_off, timeout=60, what="both deals handed off")
    hub.control.set_faults(latency_ms=0)
    assert (
        enrollments_of(hub, "5103", "3001") == 1
    )  # a re-enrollable workflow: only the journey stops a second
    assert sorted(hub.control.enrollments()["5103"]["contactIds"]) == ["3001", "3002"]
    assert hub.control.list_memberships()["702"]["memberIds"].count("3001") == 1
