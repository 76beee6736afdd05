"""The engine's recovery paths: stages never left blank, waiting marked before the owner task,
dead letters dropped once their cause is gone. Sandbox over HTTP, real SDK gateway, real Redis."""

from __future__ import annotations

import pytest

from handoff_worker.domain.models import RecordKind
from handoff_worker.errors import PermanentHubSpotError, RequestNotSentError
from handoff_worker.handoff.deadletter import list_failures
from handoff_worker.handoff.engine import HandoffEngine
from handoff_worker.sandbox.testing import SandboxServer

CONTACTS_UPDATE = "/crm/v3/objects/contacts/batch/update"


def stage(hub: SandboxServer, contact_id: str) -> str | None:
    found: str | None = hub.control.object("contacts", contact_id)["properties"].get("lifecyclestage")
    return found


def fail_updates_after_the_clear(hub: SandboxServer, refusals: int) -> None:
    """Let the clear through, then have HubSpot refuse the next `refusals` contact writes."""
    hub.control.fail_call(2, 400, path_prefix=CONTACTS_UPDATE, count=refusals)


def test_refused_set_with_markers_still_moves_the_stage_alone(
    hub: SandboxServer, engine: HandoffEngine
) -> None:
    hub.control.lose_deal("2001", "Can't Fulfill Their Needs")  # writes a property that does not exist
    report = engine.handoff_deal("2001")
    assert report.outcome == "partial_failure"
    assert {c.outcome for c in report.contacts.values()} == {"failed"}
    assert "no_such_property" in report.errors[0]
    assert "marker and property-nurture names" in report.errors[0]
    assert stage(hub, "3001") == "lead" and stage(hub, "3002") == "lead"


def test_refused_set_moves_the_stage_alone_when_only_markers_were_refused(
    hub: SandboxServer, engine: HandoffEngine
) -> None:
    hub.control.lose_deal("2001", "Pricing")
    fail_updates_after_the_clear(hub, refusals=1)  # the set with markers is refused
    report = engine.handoff_deal("2001")
    assert report.outcome == "partial_failure"
    assert stage(hub, "3001") == "lead" and stage(hub, "3002") == "lead"


def test_stage_refused_twice_is_written_back_not_left_blank(
    hub: SandboxServer, engine: HandoffEngine
) -> None:
    hub.control.lose_deal("2001", "Pricing")
    before = {cid: stage(hub, cid) for cid in ("3001", "3002")}
    fail_updates_after_the_clear(hub, refusals=2)  # the set, then the stage alone
    report = engine.handoff_deal("2001")
    assert report.outcome == "partial_failure"
    assert {cid: stage(hub, cid) for cid in before} == before
    assert all(stage(hub, cid) for cid in before)


def test_stage_that_cannot_be_written_back_is_reported(hub: SandboxServer, engine: HandoffEngine) -> None:
    hub.control.lose_deal("2001", "Pricing")
    fail_updates_after_the_clear(hub, refusals=3)  # the set, the stage alone, the write-back
    report = engine.handoff_deal("2001")
    assert any("left blank" in e and "set this contact's lifecycle stage" in e for e in report.errors)


def test_refused_clear_hint_is_about_the_stage(hub: SandboxServer, engine: HandoffEngine) -> None:
    hub.control.lose_deal("2001", "Pricing")
    hub.control.fail_next(1, 400, path_prefix=CONTACTS_UPDATE)
    report = engine.handoff_deal("2001")
    assert report.errors and all("clear write of ['lifecyclestage']" in e for e in report.errors)
    assert all("marker" not in e and "lifecycle stages" in e for e in report.errors)


def test_failed_owner_task_still_marks_the_record_waiting(hub: SandboxServer, engine: HandoffEngine) -> None:
    hub.control.lose_deal("2001", None)
    hub.control.fail_next(1, 403, path_prefix="/crm/v3/objects/tasks", method="POST")
    with pytest.raises(PermanentHubSpotError):
        engine.handoff_deal("2001")
    waiting = engine.ledger.get_waiting(RecordKind.DEAL, "2001")
    assert waiting is not None and waiting.loss_id == "deal:2001:1"


def test_owner_task_never_sent_may_be_created_on_the_rerun(hub: SandboxServer, engine: HandoffEngine) -> None:
    hub.control.lose_deal("2001", None)
    # HubSpot becomes unreachable once the engine has read the stages, before the task is sent.
    hub.control.refuse_connections_after("/crm/v3/pipelines/deals")
    with pytest.raises(RequestNotSentError):
        engine.handoff_deal("2001")
    assert engine.ledger.owner_task("deal:2001:1") is None
    hub.accept_connections()
    report = engine.handoff_deal("2001")
    assert report.owner_task and report.owner_task != "intent"
    assert len(hub.control.associated_ids("deals", "2001", "tasks")) == 1


def test_reopened_deal_leaves_the_dead_letter(hub: SandboxServer, engine: HandoffEngine) -> None:
    hub.control.lose_deal("2001", "Not Ready")  # workflow 5999 does not exist
    assert engine.handoff_deal("2001").outcome == "partial_failure"
    assert [f.object_id for f in list_failures(engine.redis)] == ["2001"]
    hub.control.rep_update("deals", "2001", {"dealstage": "contractsent"})
    assert engine.handoff_deal("2001").outcome == "deal_open"
    assert list_failures(engine.redis) == []


def test_deleted_deal_leaves_the_dead_letter(hub: SandboxServer, engine: HandoffEngine) -> None:
    hub.control.lose_deal("2001", "Not Ready")
    engine.handoff_deal("2001")
    hub.control.rep_delete("deals", "2001")
    assert engine.handoff_deal("2001").outcome == "not_found"
    assert list_failures(engine.redis) == []
