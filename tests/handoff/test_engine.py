"""The handoff engine end to end: the sandbox over HTTP, the real SDK gateway, real Redis."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from handoff_worker.domain.models import RecordKind
from handoff_worker.errors import PermanentHubSpotError, TransientHubSpotError
from handoff_worker.handoff.audit import recent_audits
from handoff_worker.handoff.deadletter import get_failure, list_failures, remove_failure
from handoff_worker.handoff.engine import HandoffEngine
from handoff_worker.handoff.ledger import Ledger
from handoff_worker.handoff.lock import LockBusyError, RecordLock
from handoff_worker.handoff.resync import ResyncSummary, WaitingForReason
from handoff_worker.pending import pending_key
from handoff_worker.sandbox.testing import SandboxServer

WRITE_METHODS = {"POST", "PATCH", "PUT", "DELETE"}
READ_POSTS = ("/batch/read", "/search")


def lifecycle(hub: SandboxServer, contact_id: str) -> str | None:
    stage: str | None = hub.control.object("contacts", contact_id)["properties"].get("lifecyclestage")
    return stage


def enrolled(hub: SandboxServer, workflow_id: str) -> list[str]:
    ids: list[str] = hub.control.enrollments()[workflow_id]["contactIds"]
    return ids


def enrollment_attempts(hub: SandboxServer, workflow_id: str) -> int:
    return len(hub.control.enrollments()[workflow_id]["attempts"])


def tasks_for_deal(hub: SandboxServer, deal_id: str) -> list[str]:
    return hub.control.associated_ids("deals", deal_id, "tasks")


def writes(hub: SandboxServer) -> list[tuple[str, str]]:
    return [
        (r["method"], r["path"])
        for r in hub.control.requests("/")
        if r["method"] in WRITE_METHODS
        and not r["path"].endswith(READ_POSTS)
        and not r["path"].startswith("/_")
    ]


def new_deal(
    hub: SandboxServer, contacts: list[str], *, pipeline: str = "default", stage: str = "qualifiedtobuy"
) -> str:
    created = hub.control.rep_create(
        "deals",
        {"dealname": "Test deal", "pipeline": pipeline, "dealstage": stage, "hubspot_owner_id": "7001"},
    )
    for contact_id in contacts:
        hub.control.associate(created["id"], contact_id)
    return str(created["id"])


def new_contact(
    hub: SandboxServer, stage: str = "salesqualifiedlead", email: str | None = "x@example.com", **extra: str
) -> str:
    properties = {"lifecyclestage": stage, **extra}
    if email is not None:
        properties["email"] = email
    return str(hub.control.rep_create("contacts", properties)["id"])


# ----------------------------------------------------------------------------- deciding


def test_lost_deal_recycles_contacts_and_enrolls_once_each(hub: SandboxServer, engine: HandoffEngine) -> None:
    hub.control.lose_deal("2001", "Pricing")
    report = engine.handoff_deal("2001", "webhook")
    assert report.outcome == "handed_off"
    assert {lifecycle(hub, "3001"), lifecycle(hub, "3002")} == {"lead"}
    assert sorted(enrolled(hub, "5102")) == ["3001", "3002"]
    marker = hub.control.object("contacts", "3001")["properties"]
    assert marker["handoff_recycle_reason"] == "Pricing" and marker["handoff_source_deal_id"] == "2001"
    # get deal, pipelines (cold cache), assoc, contacts, assoc->deals, clear, set (its answer
    # shows the stage: no read back), the workflow id mapping (cold cache) and one enrollment per
    # contact. The other deal read is skipped: nobody has another deal.
    assert report.api_calls == 10
    (audit,) = recent_audits(engine.redis)
    assert audit["api_calls"] == 10 and audit["reason"] == "Pricing" and audit["trigger"] == "webhook"
    assert audit["contacts"]["3001"]["outcome"] == "recycled"


def test_second_run_writes_nothing(hub: SandboxServer, engine: HandoffEngine) -> None:
    hub.control.lose_deal("2001", "Pricing")
    engine.handoff_deal("2001", "webhook")
    hub.control.clear_requests()
    report = engine.handoff_deal("2001", "redelivery")
    assert writes(hub) == []
    assert {c.outcome for c in report.contacts.values()} == {"skipped"}
    assert enrollment_attempts(hub, "5102") == 2


def test_open_deal_and_stage_labelled_lost_are_not_handed_off(
    hub: SandboxServer, engine: HandoffEngine
) -> None:
    # Partner pipeline: `partner_handover` is labelled "Closed lost" but has probability 0.8.
    hub.control.lose_deal("2004", "Pricing", stage="partner_handover")
    assert engine.handoff_deal("2004").outcome == "deal_won"
    assert engine.handoff_deal("2002").outcome == "deal_open"
    assert lifecycle(hub, "3005") == "opportunity"
    assert enrolled(hub, "5102") == []


def test_lost_stage_of_another_pipeline_counts(hub: SandboxServer, engine: HandoffEngine) -> None:
    hub.control.lose_deal("2004", "Not Interested", stage="partner_lost")
    assert engine.handoff_deal("2004").outcome == "handed_off"
    assert lifecycle(hub, "3005") == "lead"
    assert "3005" in hub.control.list_memberships()["702"]["memberIds"]


def test_shared_contact_on_open_deal_and_customer_are_skipped(
    hub: SandboxServer, engine: HandoffEngine
) -> None:
    shared = new_contact(hub, email="shared@example.com")
    customer = new_contact(hub, stage="customer", email="cust@example.com")
    won_buyer = new_contact(hub, email="won@example.com")
    free = new_contact(hub, email="free@example.com")
    lost = new_deal(hub, [shared, customer, won_buyer, free])
    new_deal(hub, [shared])  # still open
    new_deal(hub, [won_buyer], stage="closedwon")
    new_deal(hub, [free], pipeline="renewals", stage="renewal_churned")  # another loss does not block
    hub.control.lose_deal(lost, "Pricing")
    report = engine.handoff_deal(lost)
    assert report.contacts[shared].why.startswith("open_deal")
    assert report.contacts[customer].why.startswith("customer")
    assert report.contacts[won_buyer].why.startswith("customer")
    assert report.contacts[free].outcome == "recycled"
    assert enrolled(hub, "5102") == [free]
    assert lifecycle(hub, shared) == "salesqualifiedlead" and lifecycle(hub, customer) == "customer"


def test_contact_without_email_is_skipped_for_workflow_nurture(
    hub: SandboxServer, engine: HandoffEngine
) -> None:
    mute = new_contact(hub, email=None)
    deal = new_deal(hub, [mute, "3006"])
    hub.control.lose_deal(deal, "Pricing")
    report = engine.handoff_deal(deal)
    assert report.contacts[mute].why.startswith("no_email")
    assert lifecycle(hub, mute) == "salesqualifiedlead"
    assert enrolled(hub, "5102") == ["3006"]


# ----------------------------------------------------------------------------- reasons


# The second is a picklist option HubSpot knows and the YAML does not.
@pytest.mark.parametrize("raw_reason", [None, "Not a Fit - Might Be in the Future"])
def test_missing_or_unknown_reason_gets_one_owner_task_then_runs_when_filled(
    hub: SandboxServer, engine: HandoffEngine, raw_reason: str | None
) -> None:
    hub.control.lose_deal("2001", raw_reason)
    first = engine.handoff_deal("2001", "webhook")
    again = engine.handoff_deal("2001", "redelivery")
    assert first.outcome == again.outcome == "waiting_for_reason"
    (task_id,) = tasks_for_deal(hub, "2001")
    task = hub.control.object("tasks", task_id)["properties"]
    assert task["hs_task_subject"] == "Add a lost reason to Acme expansion"
    # The owner reads the field's label as HubSpot shows it, not its internal name.
    assert "the field 'Closed lost reason'" in task["hs_task_body"]
    assert "closed_lost_reason" not in task["hs_task_body"]
    assert lifecycle(hub, "3001") == "opportunity" and enrolled(hub, "5102") == []
    waiting = Ledger(engine.redis).get_waiting(RecordKind.DEAL, "2001")
    assert waiting is not None and waiting.name == "Acme expansion"

    hub.control.rep_update("deals", "2001", {"closed_lost_reason": "Pricing"})
    assert engine.handoff_deal("2001", "webhook").outcome == "handed_off"
    assert sorted(enrolled(hub, "5102")) == ["3001", "3002"]
    assert tasks_for_deal(hub, "2001") == [task_id]
    assert Ledger(engine.redis).get_waiting(RecordKind.DEAL, "2001") is None


def test_reason_without_recycling_touches_nothing(hub: SandboxServer, engine: HandoffEngine) -> None:
    hub.control.lose_deal("2001", "Competitor")
    hub.control.clear_requests()
    report = engine.handoff_deal("2001")
    assert report.outcome == "handed_off"
    assert {c.why.split(":")[0] for c in report.contacts.values()} == {"not_recycled"}
    assert writes(hub) == []
    assert lifecycle(hub, "3001") == "opportunity"


def test_reason_that_only_sets_a_stage(hub: SandboxServer, engine: HandoffEngine) -> None:
    hub.control.lose_deal("2001", "Not a Fit - Never Will Be")
    engine.handoff_deal("2001")
    properties = hub.control.object("contacts", "3002")["properties"]
    assert properties["lifecyclestage"] == "other"
    assert not properties.get("handoff_recycle_reason")


def test_every_nurture_method_in_one_reason_costs_no_extra_per_contact_for_lists(
    hub: SandboxServer, engine: HandoffEngine
) -> None:
    hub.control.lose_deal("2001", "Feature Missing")
    engine.pipelines.catalog(engine.rules_source()[0].deals)  # warm cache, as in a running worker
    report = engine.handoff_deal("2001")
    assert report.outcome == "handed_off"
    assert sorted(enrolled(hub, "5104")) == ["3001", "3002"]
    assert sorted(hub.control.list_memberships()["702"]["memberIds"]) == ["3001", "3002"]
    assert hub.control.object("contacts", "3001")["properties"]["nurture_track"] == "feature_missing"
    # get deal, assoc, contacts, assoc->deals, clear, set(+markers+property), list add, the
    # workflow id mapping (cold cache), plus one enrollment per contact.
    assert report.api_calls == 8 + 2


def test_unqualified_lead_is_handed_off_like_a_one_contact_deal(
    hub: SandboxServer, engine: HandoffEngine
) -> None:
    hub.control.rep_update(
        "contacts", "3006", {"hs_lead_status": "UNQUALIFIED", "handoff_unqualified_reason": "Pricing"}
    )
    report = engine.handoff_contact("3006", "webhook")
    assert report.outcome == "handed_off"
    assert lifecycle(hub, "3006") == "lead" and enrolled(hub, "5102") == ["3006"]
    assert not hub.control.object("contacts", "3006")["properties"].get("handoff_source_deal_id")
    assert engine.handoff_contact("3002").outcome == "not_unqualified"


# ----------------------------------------------------------------------------- failures


def test_permanent_step_failures_finish_the_rest_and_land_in_the_dead_letter(
    hub: SandboxServer, engine: HandoffEngine
) -> None:
    hub.control.lose_deal("2001", "Not Ready")  # workflow 5999 does not exist; list 702 works
    report = engine.handoff_deal("2001")
    assert report.outcome == "partial_failure"
    assert lifecycle(hub, "3001") == "lead"
    assert sorted(hub.control.list_memberships()["702"]["memberIds"]) == ["3001", "3002"]
    failure = get_failure(engine.redis, RecordKind.DEAL, "2001")
    assert failure is not None and failure.permanent and "workflow 5999" in failure.error
    assert any("workflow:5999" in e for e in recent_audits(engine.redis)[0]["errors"])


def test_dynamic_list_fails_with_a_message_naming_it(hub: SandboxServer, engine: HandoffEngine) -> None:
    hub.control.lose_deal("2001", "Not a Prospect")
    report = engine.handoff_deal("2001")
    assert report.outcome == "partial_failure"
    assert all("list 703" in e for e in report.errors)
    assert [f.object_id for f in list_failures(engine.redis)] == ["2001"]
    assert remove_failure(engine.redis, RecordKind.DEAL, "2001") and list_failures(engine.redis) == []


def test_refused_batch_write_is_reported_not_passed(hub: SandboxServer, engine: HandoffEngine) -> None:
    hub.control.lose_deal("2001", "Can't Fulfill Their Needs")  # writes a property that does not exist
    report = engine.handoff_deal("2001")
    assert report.outcome == "partial_failure"
    assert {c.outcome for c in report.contacts.values()} == {"failed"}
    assert "no_such_property" in report.errors[0]
    assert all(lifecycle(hub, cid) for cid in ("3001", "3002"))  # no stage left blank


def test_partial_batch_failure_207_fails_only_those_contacts(
    hub: SandboxServer, engine: HandoffEngine
) -> None:
    gone = new_contact(hub, email="gone@example.com")
    deal = new_deal(hub, [gone, "3006"])
    hub.control.lose_deal(deal, "Pricing")
    engine.pipelines.catalog(engine.rules_source()[0].deals)
    # The contact is deleted after the engine read it and its other deals, before the clear:
    # the clear answers 207 for it alone.
    hub.control.delete_after("contacts", gone, path_prefix="/crm/v4/associations/contacts/deals/batch/read")
    report = engine.handoff_deal(deal)
    assert report.contacts[gone].outcome == "failed"
    assert "OBJECT_NOT_FOUND" in report.contacts[gone].failures[0]
    assert report.contacts["3006"].outcome == "recycled" and enrolled(hub, "5102") == ["3006"]


def test_lifecycle_that_does_not_stick_is_retried_once_then_reported(
    hub: SandboxServer, engine: HandoffEngine
) -> None:
    hub.control.lose_deal("2001", "Pricing")
    # What HubSpot was seen doing: a write answered with success that changes nothing. Here every
    # clear of 3001 is such a write, so the forward-only rule keeps "opportunity".
    hub.control.ignore_writes("contacts", "lifecyclestage", object_id="3001", value="")
    report = engine.handoff_deal("2001")
    assert report.contacts["3001"].outcome == "failed"
    assert "stayed 'opportunity'" in report.contacts["3001"].failures[0]
    assert report.contacts["3002"].outcome == "recycled"
    assert enrolled(hub, "5102") == ["3002"]  # no nurture for a contact whose stage did not move
    assert get_failure(engine.redis, RecordKind.DEAL, "2001") is not None


def test_transient_error_raises_and_the_rerun_finishes_without_doubling(
    hub: SandboxServer, engine: HandoffEngine
) -> None:
    hub.control.lose_deal("2001", "Pricing")
    # Enough 503s on the second enrollment to outlast the gateway's own retries.
    hub.control.fail_next(20, 503, path_prefix="/automation/v2/workflows/5102/enrollments/contacts/sam")
    with pytest.raises(TransientHubSpotError):
        engine.handoff_deal("2001")
    assert enrolled(hub, "5102") == ["3001"]
    hub.control.clear_faults()
    assert engine.handoff_deal("2001", "retry").outcome == "handed_off"
    assert sorted(enrolled(hub, "5102")) == ["3001", "3002"]
    attempts = hub.control.enrollments()["5102"]["attempts"]
    assert [a["contactId"] for a in attempts].count("3001") == 1


def test_dry_run_decides_but_writes_nothing(
    hub: SandboxServer, engine_for: Callable[..., HandoffEngine]
) -> None:
    dry = engine_for(dry_run=True)
    hub.control.lose_deal("2001", "Feature Missing")
    hub.control.lose_deal("2002", None)
    hub.control.clear_requests()
    first = dry.handoff_deal("2001")
    second = dry.handoff_deal("2002")
    assert writes(hub) == []
    assert first.outcome == "dry_run" and {c.outcome for c in first.contacts.values()} == {"planned"}
    assert second.outcome == "waiting_for_reason" and second.owner_task == "would create"
    assert all(a["dry_run"] for a in recent_audits(dry.redis))
    assert Ledger(dry.redis).current_loss(RecordKind.DEAL, "2001") is None


# ----------------------------------------------------------------------------- concurrency, losses


def test_parallel_runs_enroll_exactly_once(
    hub: SandboxServer, engine_for: Callable[..., HandoffEngine]
) -> None:
    hub.control.lose_deal("2001", "Pricing")
    hub.control.set_faults(latency_ms=30)
    outcomes: list[str] = []

    def run() -> None:
        try:
            outcomes.append(engine_for().handoff_deal("2001").outcome)
        except LockBusyError:
            outcomes.append("busy")

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    hub.control.clear_faults()
    assert outcomes.count("handed_off") >= 1 and "busy" in outcomes
    assert sorted(enrolled(hub, "5102")) == ["3001", "3002"]
    assert enrollment_attempts(hub, "5102") == 2


def test_lock_is_released_only_by_its_holder(redis_conn: redis.Redis) -> None:
    with RecordLock(redis_conn, RecordKind.DEAL, "1", ttl=5) as held:
        with pytest.raises(LockBusyError), RecordLock(redis_conn, RecordKind.DEAL, "1", ttl=5):
            pass
        assert redis_conn.get(held.key) == held.token
    assert redis_conn.get(held.key) is None


def test_deal_reopened_then_lost_again_is_a_new_loss(hub: SandboxServer, engine: HandoffEngine) -> None:
    hub.control.lose_deal("2001", "Pricing")
    engine.handoff_deal("2001")
    hub.control.rep_update("deals", "2001", {"dealstage": "contractsent"})
    assert engine.handoff_deal("2001").outcome == "deal_open"
    hub.control.rep_update("contacts", "3001", {"lifecyclestage": "opportunity"})
    hub.control.lose_deal("2001", "Feature Missing")
    report = engine.handoff_deal("2001")
    assert report.loss_id == "deal:2001:2" and report.outcome == "handed_off"
    assert lifecycle(hub, "3001") == "lead"
    assert sorted(enrolled(hub, "5104")) == ["3001", "3002"]
    assert enrollment_attempts(hub, "5102") == 2  # the first loss's nurture is not repeated


def test_forget_moves_state_on_merge_and_drops_it_on_delete(
    hub: SandboxServer, engine: HandoffEngine
) -> None:
    hub.control.lose_deal("2001", None)
    engine.handoff_deal("2001")
    ledger = Ledger(engine.redis)
    engine.forget("deals", "2001", merged_into="2999")
    assert ledger.get_waiting(RecordKind.DEAL, "2001") is None
    moved = ledger.get_waiting(RecordKind.DEAL, "2999")
    assert moved is not None and moved.loss_id == "deal:2999:1"
    assert ledger.owner_task("deal:2999:1") is not None
    engine.forget("deal", "2999")
    assert (
        ledger.get_waiting(RecordKind.DEAL, "2999") is None
        and ledger.current_loss(RecordKind.DEAL, "2999") is None
    )


class _Requeued:
    """Where the waiting revisit sends records whose reason is now set."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    def deal(self, deal_id: str) -> bool:
        self.ids.append(deal_id)
        return True

    def contact(self, contact_id: str) -> bool:
        self.ids.append(contact_id)
        return True


def escalate_overdue(engine: HandoffEngine, *, hours_later: float) -> int:
    """The resync sweep's waiting revisit, run `hours_later` than now: how many it escalated."""
    later = datetime.now(UTC) + timedelta(hours=hours_later)
    revisit = WaitingForReason(engine.ledger, engine.gateway, engine.rules_source()[0], clock=lambda: later)
    summary = ResyncSummary()
    revisit.revisit(summary, dry_run=False, sink=_Requeued())
    assert summary.failed == 0, summary.errors
    return summary.escalated


def due_ms(task: dict[str, Any]) -> int:
    raw = str(task["properties"]["hs_timestamp"])
    return (
        int(raw)
        if raw.isdigit()
        else int(datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp() * 1000)
    )


def test_overdue_wait_is_escalated_once(
    hub: SandboxServer, engine_for: Callable[..., HandoffEngine], rules_path: Path, redis_conn: redis.Redis
) -> None:
    rules_path.write_text(
        rules_path.read_text().replace("  sla_hours: 24\n", "  sla_hours: 24\n  escalate_to_owner: 7002\n")
    )
    engine = engine_for()
    hub.control.lose_deal("2001", None)
    engine.handoff_deal("2001")
    assert escalate_overdue(engine, hours_later=0) == 0  # within the SLA
    assert escalate_overdue(engine, hours_later=25) == 1
    assert escalate_overdue(engine, hours_later=25) == 0
    subjects = sorted(
        hub.control.object("tasks", t)["properties"]["hs_task_subject"] for t in tasks_for_deal(hub, "2001")
    )
    assert subjects == ["Add a lost reason to Acme expansion", "Lost reason still missing on Acme expansion"]


def test_owner_task_and_escalation_share_one_subject_syntax_and_one_due_date(
    hub: SandboxServer, engine_for: Callable[..., HandoffEngine], rules_path: Path
) -> None:
    # The config validator tells marketers `{{` and `}}` give a literal brace.
    rules_path.write_text(
        rules_path.read_text().replace(
            '  subject: "Add a lost reason to {deal_name}"\n',
            '  subject: "{{Sales}} add a lost reason to {deal_name}"\n'
            "  escalate_to_owner: 7002\n"
            '  escalation_subject: "{{Escalated}} {deal_name}: reason still missing"\n',
        )
    )
    engine = engine_for()
    hub.control.lose_deal("2001", None)
    engine.handoff_deal("2001")
    assert escalate_overdue(engine, hours_later=25) == 1

    waiting = engine.ledger.get_waiting(RecordKind.DEAL, "2001")
    assert waiting is not None
    reason_due = datetime.fromisoformat(waiting.since) + timedelta(hours=24)
    tasks = {
        task["properties"]["hs_task_subject"]: due_ms(task)
        for task in (hub.control.object("tasks", t) for t in tasks_for_deal(hub, "2001"))
    }
    assert tasks == {
        "{Sales} add a lost reason to Acme expansion": int(reason_due.timestamp() * 1000),
        "{Escalated} Acme expansion: reason still missing": int(reason_due.timestamp() * 1000),
    }


def test_refused_owner_task_is_created_by_the_rerun_with_the_first_deadline(
    hub: SandboxServer, engine: HandoffEngine
) -> None:
    hub.control.lose_deal("2001", None)
    hub.control.fail_next(1, 400, path_prefix="/crm/v3/objects/tasks", method="POST")
    with pytest.raises(PermanentHubSpotError):
        engine.handoff_deal("2001")
    assert tasks_for_deal(hub, "2001") == []
    waiting = engine.ledger.get_waiting(RecordKind.DEAL, "2001")
    assert waiting is not None

    report = engine.handoff_deal("2001")  # HubSpot refused it, so it surely does not exist yet

    (task_id,) = tasks_for_deal(hub, "2001")
    assert report.owner_task == task_id
    reason_due = datetime.fromisoformat(waiting.since) + timedelta(hours=24)
    assert due_ms(hub.control.object("tasks", task_id)) == int(reason_due.timestamp() * 1000)


def test_stage_added_after_the_cache_was_filled_forces_one_refresh(
    hub: SandboxServer, engine: HandoffEngine
) -> None:
    engine.pipelines.catalog(engine.rules_source()[0].deals)  # cache filled before the new pipeline
    hub.control.seed(
        {
            "pipelines": [
                {
                    "id": "expansion",
                    "label": "Expansion",
                    "stages": [
                        {"id": "exp_open", "label": "Open", "probability": 0.5},
                        {"id": "exp_gone", "label": "Gone", "probability": 0.0, "isClosed": True},
                    ],
                }
            ]
        }
    )
    deal = new_deal(hub, ["3006"], pipeline="expansion", stage="exp_open")
    hub.control.lose_deal(deal, "Pricing", stage="exp_gone")
    hub.control.clear_requests()
    assert engine.handoff_deal(deal).outcome == "handed_off"
    assert len(hub.control.requests("/crm/v3/pipelines/deals")) == 1
    assert lifecycle(hub, "3006") == "lead"


def test_forget_drops_the_pending_mark(
    hub: SandboxServer, engine: HandoffEngine, redis_conn: redis.Redis
) -> None:
    redis_conn.set(pending_key("contact", "3006"), "q:live:intake-task-3006")
    engine.forget("contacts", "3006")
    assert not redis_conn.exists(pending_key("contact", "3006"))
