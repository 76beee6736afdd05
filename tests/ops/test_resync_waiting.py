"""Deals waiting for a lost reason: escalated once, never for a deleted deal, failures contained."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from ops_support import OpsEnv, recent_window, seed_lost_deal

from handoff_worker.domain.models import NewTask
from handoff_worker.handoff.inline import InlineSink
from handoff_worker.handoff.ledger import Ledger
from handoff_worker.handoff.resync import (
    Resync,
    ResyncRequest,
    ResyncSummary,
    WaitingForReason,
    read_watermark,
    run_locked,
)
from handoff_worker.hubspot.gateway import SdkGateway
from handoff_worker.hubspot.protocol import HubSpotGateway

ESCALATION_OWNER = "7002"  # owner_tasks.escalate_to_owner in nurture-ops.yaml


def _park_without_reason(ops: OpsEnv, *deal_ids: str) -> None:
    """Lost deals without a reason, handed off once: the engine parks them as waiting."""
    for number, deal_id in enumerate(deal_ids):
        seed_lost_deal(ops, deal_id, None, {f"9{deal_id}{number}": "salesqualifiedlead"})
    wiring = ops.wiring()
    summary = run_locked(ops.redis, wiring.resync(InlineSink(wiring.engine)), ResyncRequest(*recent_window()))
    assert summary.failed == 0, summary.errors
    assert {w.object_id for w in Ledger(ops.redis).list_waiting()} >= set(deal_ids)


def _escalation_tasks(ops: OpsEnv) -> list[str]:
    return [
        t["properties"]["hs_task_subject"]
        for t in ops.server.control.objects("tasks")
        if t["properties"].get("hubspot_owner_id") == ESCALATION_OWNER
    ]


def _overdue_revisit(ops: OpsEnv, gateway: HubSpotGateway) -> WaitingForReason:
    a_day_later = datetime.now(UTC) + timedelta(hours=25)
    return WaitingForReason(Ledger(ops.redis), gateway, ops.rules, clock=lambda: a_day_later)


class _ProcessDied(BaseException):
    """Stands for the worker process dying: nothing after it runs, no handler catches it."""


class _DiesAfterCreatingTask:
    """The real gateway, except that the process dies just after HubSpot created the task."""

    def __init__(self, real: SdkGateway) -> None:
        self.real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def create_task(self, task: NewTask) -> str:
        self.real.create_task(task)
        raise _ProcessDied


def test_a_crash_right_after_escalating_does_not_escalate_twice(ops: OpsEnv) -> None:
    _park_without_reason(ops, "8401")
    dying = cast(HubSpotGateway, _DiesAfterCreatingTask(ops.gateway))

    with pytest.raises(_ProcessDied):
        _overdue_revisit(ops, dying).revisit(
            ResyncSummary(), dry_run=False, sink=InlineSink(ops.wiring().engine)
        )
    assert len(_escalation_tasks(ops)) == 1

    next_sweep = ResyncSummary()
    _overdue_revisit(ops, ops.gateway).revisit(
        next_sweep, dry_run=False, sink=InlineSink(ops.wiring().engine)
    )
    assert next_sweep.escalated == 0
    assert len(_escalation_tasks(ops)) == 1, "the record must be marked escalated before the task exists"


def test_a_failed_escalation_is_retried_by_the_next_sweep(ops: OpsEnv) -> None:
    _park_without_reason(ops, "8411")
    sink = InlineSink(ops.wiring().engine)
    ops.server.control.fail_next(1, 400, path_prefix="/crm/v3/objects/tasks", method="POST")

    failed = ResyncSummary()
    _overdue_revisit(ops, ops.gateway).revisit(failed, dry_run=False, sink=sink)
    assert (failed.escalated, failed.failed, _escalation_tasks(ops)) == (0, 1, [])
    assert "8411" in failed.errors[0]

    retried = ResyncSummary()
    _overdue_revisit(ops, ops.gateway).revisit(retried, dry_run=False, sink=sink)
    assert (retried.escalated, retried.failed) == (1, 0), retried.errors
    assert len(_escalation_tasks(ops)) == 1


def test_a_deleted_waiting_deal_is_cleared_not_escalated(ops: OpsEnv) -> None:
    _park_without_reason(ops, "8421", "8422")
    ops.server.control.rep_delete("deals", "8421")

    summary = ResyncSummary()
    _overdue_revisit(ops, ops.gateway).revisit(summary, dry_run=False, sink=InlineSink(ops.wiring().engine))

    assert (summary.escalated, summary.waiting_cleared, summary.failed) == (1, 1, 0), summary.errors
    assert [w.object_id for w in Ledger(ops.redis).list_waiting()] == ["8422"]
    tasks = _escalation_tasks(ops)
    assert len(tasks) == 1 and "Deal 8422" in tasks[0]


def test_one_failing_waiting_record_does_not_stop_the_others_or_move_the_watermark(ops: OpsEnv) -> None:
    _park_without_reason(ops, "8431", "8432")
    # The first escalation (deal 8431: waiting records are visited in id order) is refused.
    ops.server.control.fail_next(1, 400, path_prefix="/crm/v3/objects/tasks", method="POST")
    resync = Resync(
        ops.gateway,
        ops.rules,
        InlineSink(ops.wiring().engine),
        waiting=_overdue_revisit(ops, ops.gateway),
    )

    summary = run_locked(ops.redis, resync, ResyncRequest(*recent_window()), advance_watermark=True)

    assert summary.failed == 1 and "8431" in summary.errors[0], summary.errors
    assert summary.escalated == 1
    tasks = _escalation_tasks(ops)
    assert len(tasks) == 1 and "Deal 8432" in tasks[0], "the second record must still be escalated"
    assert read_watermark(ops.redis) is None, "a sweep with a failure must not move the watermark"


def test_an_escalation_that_may_exist_is_not_sent_again(ops: OpsEnv) -> None:
    _park_without_reason(ops, "8441")
    sink = InlineSink(ops.wiring().engine)
    # A 5xx may come after HubSpot created the task: a second one would remind the owner twice.
    ops.server.control.fail_next(1, 503, path_prefix="/crm/v3/objects/tasks", method="POST")

    failed = ResyncSummary()
    _overdue_revisit(ops, ops.gateway).revisit(failed, dry_run=False, sink=sink)
    assert (failed.escalated, failed.failed) == (0, 1) and "8441" in failed.errors[0]

    next_sweep = ResyncSummary()
    _overdue_revisit(ops, ops.gateway).revisit(next_sweep, dry_run=False, sink=sink)
    assert (next_sweep.escalated, next_sweep.failed, _escalation_tasks(ops)) == (0, 0, [])
