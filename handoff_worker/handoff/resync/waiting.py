"""The sweep's last step: records waiting for a lost reason are re-run or escalated."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from handoff_worker.domain.models import RecordKind
from handoff_worker.domain.nurture import NurtureRules
from handoff_worker.handoff.ledger import Ledger, Waiting
from handoff_worker.handoff.owner_tasks import ReasonReminders, is_overdue, reason_property_for
from handoff_worker.handoff.resync.sweep import HandoffSink, ResyncSummary, send
from handoff_worker.hubspot.protocol import HubSpotGateway

log = logging.getLogger(__name__)


class WaitingForReason:
    """Revisits the engine's "waiting for a reason" records.

    A record whose reason is now set is handed off again (the engine decides what that means). One
    still without a reason after the YAML's `owner_tasks.sla_hours` is escalated once (the one
    escalation, owner_tasks.py) to `owner_tasks.escalation_owner_id`. A record HubSpot no
    longer has (deleted) is dropped from the waiting set. A record that fails is counted and the
    others go on. Only one sweep runs at a time (the lock), so two never escalate together.
    """

    def __init__(
        self,
        ledger: Ledger,
        gateway: HubSpotGateway,
        rules: NurtureRules,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.ledger = ledger
        self.gateway = gateway
        self.rules = rules
        self.clock = clock
        self.reminders = ReasonReminders(gateway, ledger)

    def revisit(self, summary: ResyncSummary, *, dry_run: bool, sink: HandoffSink) -> None:
        waiting = self.ledger.list_waiting()
        summary.waiting_for_reason = len(waiting)
        for kind in RecordKind:
            of_kind = [w for w in waiting if w.kind is kind]
            if not of_kind:
                continue
            reason_property = reason_property_for(self.rules, kind)
            records = self.gateway.batch_read(
                kind.object_type, [w.object_id for w in of_kind], [reason_property]
            )
            # Batch read leaves out ids HubSpot no longer has (deleted); they map to None here.
            reasons = {r.id: (r.get(reason_property) or "").strip() for r in records}
            for record in of_kind:
                try:
                    self._revisit_one(summary, record, reasons, dry_run=dry_run, sink=sink)
                except Exception as exc:
                    # One record's failure is counted and the rest go on; a failed sweep leaves the
                    # watermark, so the next sweep comes back to this record.
                    summary.failed += 1
                    summary.errors.append(f"waiting {kind} {record.object_id}: {exc}")
                    log.warning("resync could not revisit waiting %s %s: %s", kind, record.object_id, exc)

    def _revisit_one(
        self,
        summary: ResyncSummary,
        record: Waiting,
        reasons: dict[str, str],
        *,
        dry_run: bool,
        sink: HandoffSink,
    ) -> None:
        if record.object_id not in reasons:
            summary.waiting_cleared += 1
            if not dry_run:
                # Deleted in HubSpot: there is nothing left to hand off nor an owner to remind.
                self.ledger.clear_waiting(record.kind, record.object_id)
            return
        if reasons[record.object_id]:
            summary.waiting_requeued += 1
            if not dry_run:
                send(sink, record.kind, record.object_id)
        elif is_overdue(record, self.rules.owner_tasks, self.clock()):
            if not dry_run:
                self.reminders.escalate(record, self.rules)
            summary.escalated += 1
