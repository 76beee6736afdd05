"""Merges in HubSpot: what the worker keeps follows the survivor, under both records' locks, and
never overwrites what the survivor holds. Over the sandbox (real SDK over HTTP, real Redis)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from handoff_worker.domain.journey import JourneyState
from handoff_worker.domain.models import RecordKind
from handoff_worker.handoff.engine import HandoffEngine
from handoff_worker.handoff.journeys import ContactLocks
from handoff_worker.handoff.ledger import DONE, LIFECYCLE_STEP, Ledger, step_field
from handoff_worker.handoff.lock import LockBusyError
from handoff_worker.testing import wait_until


def in_parallel(*calls: Callable[[], object]) -> None:
    failures: list[BaseException] = []

    def run(call: Callable[[], object]) -> None:
        try:
            call()
        except BaseException as exc:  # surfaced below: a thread's exception is otherwise lost
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(c,)) for c in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures, failures


def as_task(call: Callable[[], object]) -> Callable[[], None]:
    """The call as its Celery task runs it: a busy record (or one merged meanwhile) runs again."""

    def run() -> None:
        for _ in range(50):
            try:
                call()
                return
            except LockBusyError:
                time.sleep(0.05)
        raise AssertionError("still busy after 50 tries")

    return run


def merge_in_hubspot_then_forget(hub: Any, engine: HandoffEngine) -> None:
    hub.control.rep_merge("contacts", "3006", "3002")
    engine.forget("contacts", "3002", merged_into="3006")


def test_a_merged_contact_journey_and_steps_follow_the_survivor(hub: Any, engine: HandoffEngine) -> None:
    hub.control.lose_deal("2001", "Pricing")
    engine.handoff_deal("2001")
    hub.control.rep_merge("contacts", "3006", "3002")  # 3006 survives, never recycled itself
    engine.forget("contacts", "3002", merged_into="3006")
    assert engine.journeys.get("3002") is None
    survivor = engine.journeys.get("3006")
    assert survivor is not None and survivor.episode.state is JourneyState.RECYCLED
    assert survivor.episode.source_ids == ("deal:2001:1",)
    steps = Ledger(engine.redis).steps("deal:2001:1")
    assert steps.get(step_field("3006", LIFECYCLE_STEP)) == DONE
    assert not [f for f in steps if f.startswith("3002|")]
    # The deal's handoff again (a resync) finds the survivor done: nothing is entered twice.
    attempts = len(hub.control.enrollments()["5102"]["attempts"])
    assert engine.handoff_deal("2001").outcome == "handed_off"
    assert len(hub.control.enrollments()["5102"]["attempts"]) == attempts


def test_the_survivor_keeps_its_own_journey(hub: Any, engine: HandoffEngine) -> None:
    hub.control.lose_deal("2001", "Pricing")
    hub.control.lose_deal("2002", "Not Interested")
    engine.handoff_deal("2001")
    engine.handoff_deal("2002")
    own = engine.journeys.get("3003")
    assert own is not None and own.episode.reason == "Not Interested"
    hub.control.rep_merge("contacts", "3003", "3002")
    engine.forget("contacts", "3002", merged_into="3003")
    survivor = engine.journeys.get("3003")
    assert survivor is not None and survivor.episode == own.episode  # nothing overwritten
    # The merged-away episode is kept in the survivor's history, not dropped.
    assert [p.episode.reason for p in engine.journeys.past_episodes("3003")] == ["Pricing"]
    assert engine.journeys.get("3002") is None
    steps = Ledger(engine.redis).steps("deal:2001:1")
    assert steps.get(step_field("3003", LIFECYCLE_STEP)) == DONE


def test_a_deal_merged_during_the_survivors_handoff_leaves_the_survivors_loss(
    hub: Any, engine_for: Callable[..., HandoffEngine]
) -> None:
    hub.control.rep_update("deals", "2002", {"closedate": "2026-11-01T00:00:00Z"})
    hub.control.rep_update("deals", "2001", {"closedate": "2026-11-30T00:00:00Z"})
    hub.control.lose_deal("2002", "Not Interested")
    engine = engine_for()
    engine.handoff_deal("2002")
    merged_loss = Ledger(engine.redis).current_loss(RecordKind.DEAL, "2002")
    assert merged_loss is not None and merged_loss.complete
    hub.control.lose_deal("2001", "Pricing")
    # The survivor's handoff and the merge's move, at the same moment, from two workers.
    in_parallel(
        as_task(lambda: engine_for().handoff_deal("2001")),
        as_task(lambda: engine_for().forget("deals", "2002", merged_into="2001")),
    )
    ledger = Ledger(engine.redis)
    survivor = ledger.current_loss(RecordKind.DEAL, "2001")
    # The survivor's own loss, whichever ran first: never the merged deal's.
    assert survivor is not None and survivor.fingerprint == "2026-11-30T00:00:00Z" and survivor.complete
    assert ledger.current_loss(RecordKind.DEAL, "2002") is None


def test_a_contact_merged_during_a_handoff_of_its_deal(
    hub: Any, engine_for: Callable[..., HandoffEngine]
) -> None:
    hub.control.lose_deal("2001", "Pricing")
    engine = engine_for()
    hub.control.clear_requests()
    # Another handoff holds contact 3001, so this one reads the deal's contacts (3001, 3002) and
    # then waits for their locks; meanwhile 3002 is merged into 3006, in HubSpot and here.
    with ContactLocks(engine.redis, ["3001"]):
        handoff = threading.Thread(target=as_task(lambda: engine_for().handoff_deal("2001")))
        handoff.start()
        wait_until(
            lambda: hub.control.requests("/crm/v4/objects/deals/2001/associations"),
            timeout=10,
            what="the handoff reading the deal's contacts",
        )
        merge_in_hubspot_then_forget(hub, engine)
    handoff.join(timeout=60)
    # Nothing is kept under the merged id: the handoff ran again on what HubSpot shows now.
    assert engine.journeys.get("3002") is None
    steps = Ledger(engine.redis).steps("deal:2001:1")
    assert not [f for f in steps if f.startswith("3002|")]
    survivor = engine.journeys.get("3006")
    assert survivor is not None and survivor.episode.source_ids == ("deal:2001:1",)
    assert steps.get(step_field("3006", LIFECYCLE_STEP)) == DONE


def test_the_merged_away_deletion_handled_before_the_merge_loses_nothing(
    hub: Any, engine: HandoffEngine
) -> None:
    hub.control.lose_deal("2002", "Not Interested")
    engine.handoff_deal("2002")
    hub.control.rep_merge("deals", "2001", "2002")
    # HubSpot sends the deletion of 2002 and the merge in no set order: the deletion first here.
    engine.forget("deals", "2002")
    engine.forget("deals", "2002", merged_into="2001")
    moved = Ledger(engine.redis).current_loss(RecordKind.DEAL, "2001")
    assert moved is not None and moved.complete and moved.loss_id == "deal:2001:1"
    assert Ledger(engine.redis).current_loss(RecordKind.DEAL, "2002") is None
