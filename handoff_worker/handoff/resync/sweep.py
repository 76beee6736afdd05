"""One sweep: walk HubSpot for lost deals and unqualified leads in a window, send each on once.

What the ledger says is done is skipped; the rest goes to a sink (queued for the workers, run
inline, or only counted in a dry run). Records waiting for a reason are revisited at the end.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Protocol

import redis

from handoff_worker.domain.models import CrmObject, ObjectType, RecordKind, SearchFilter
from handoff_worker.domain.nurture import NurtureRules
from handoff_worker.errors import HandoffError
from handoff_worker.handoff.facts import loss_signature, signature_properties
from handoff_worker.handoff.ledger import Ledger, LossSignature
from handoff_worker.handoff.resync.errors import SweepBusyError
from handoff_worker.handoff.resync.lock import LOCK_KEY, SweepLock
from handoff_worker.handoff.resync.walk import (
    SEARCH_PAGE_SIZE,
    SEARCH_RESULT_CAP,
    all_lost_stage_ids,
    chunk_in_filter,
    walk_modified,
)
from handoff_worker.handoff.resync.window import write_watermark
from handoff_worker.hubspot.protocol import HubSpotGateway

log = logging.getLogger(__name__)


class HandoffSink(Protocol):
    """Where found records go: queued for a Celery worker, run inline, or only counted (dry run).
    Each returns False when the record was left alone because work for it is already queued or
    running."""

    def deal(self, deal_id: str) -> bool: ...

    def contact(self, contact_id: str) -> bool: ...


def send(sink: HandoffSink, kind: RecordKind, object_id: str) -> bool:
    """The sink's entry for the record's kind."""
    return {RecordKind.DEAL: sink.deal, RecordKind.CONTACT: sink.contact}[kind](object_id)


class DoneCheck(Protocol):
    """The engine's ledger, asked whether a record's loss, as HubSpot shows it now, is handed off."""

    def is_done(self, kind: RecordKind, object_id: str, seen: LossSignature) -> bool: ...


class NothingDone:
    """A ledger that knows nothing: every record is sent and the engine itself skips what is done."""

    def is_done(self, kind: RecordKind, object_id: str, seen: LossSignature) -> bool:
        return False


@dataclass
class ResyncSummary:
    since: str = ""
    until: str = ""
    dry_run: bool = False
    deals_found: int = 0
    contacts_found: int = 0
    already_done: int = 0
    queued: int = 0
    already_queued: int = 0  # work for the record was already queued or running: left alone
    waiting_for_reason: int = 0
    waiting_requeued: int = 0
    escalated: int = 0
    waiting_cleared: int = 0  # waiting records HubSpot no longer has (deleted): dropped
    recycled_checked: int = 0  # recycled contacts looked at for sales having them back
    came_back: int = 0  # of those, sales has them back: sent on to leave their nurture
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def found(self) -> int:
        return self.deals_found + self.contacts_found

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "found": self.found, "ok": self.ok}


ProgressCallback = Callable[[ResyncSummary], None]


@dataclass
class ResyncRequest:
    since: datetime
    until: datetime
    deal_ids: tuple[str, ...] = ()
    include_contacts: bool = True
    dry_run: bool = False


class Resync:
    """One sweep over a window. Construct with what it needs; `run` does the work."""

    def __init__(
        self,
        gateway: HubSpotGateway,
        rules: NurtureRules,
        sink: HandoffSink,
        *,
        done: DoneCheck | None = None,
        waiting: WaitingRevisit | None = None,
        came_back: WaitingRevisit | None = None,
        page_size: int = SEARCH_PAGE_SIZE,
        result_cap: int = SEARCH_RESULT_CAP,
    ) -> None:
        self.gateway = gateway
        self.rules = rules
        self.sink = sink
        self.done: DoneCheck = done or NothingDone()
        self.waiting = waiting
        self.came_back = came_back
        self.page_size = page_size
        self.result_cap = result_cap
        # (kind, id) sent during the current run, so the waiting revisit does not send them again.
        self._sent: set[tuple[RecordKind, str]] = set()
        self._progress: ProgressCallback | None = None

    def run(
        self,
        request: ResyncRequest,
        *,
        progress: ProgressCallback | None = None,
        lock: SweepLock | None = None,
    ) -> ResyncSummary:
        summary = ResyncSummary(
            since=request.since.isoformat(), until=request.until.isoformat(), dry_run=request.dry_run
        )
        self._sent = set()
        self._progress = progress

        def on_page() -> None:
            if lock is not None:
                lock.check()
            if progress is not None:
                progress(summary)

        try:
            if request.deal_ids:
                self._named_deals(summary, request)
            else:
                self._sweep_deals(summary, request, on_page)
                if request.include_contacts and self.rules.leads.enabled:
                    self._sweep_contacts(summary, request, on_page)
                if self.waiting is not None:
                    # A waiting deal whose reason was just set was modified, so the walk already
                    # sent it: the revisit must not send it a second time in the same sweep.
                    once = _OncePerSweep(self.sink, self._sent)
                    self.waiting.revisit(summary, dry_run=request.dry_run, sink=once)
                if self.came_back is not None:
                    # Recycled contacts that sales took back while no webhook told.
                    once = _OncePerSweep(self.sink, self._sent)
                    self.came_back.revisit(summary, dry_run=request.dry_run, sink=once)
        except HandoffError as exc:
            # The walk cannot go on (HubSpot failed, or the seam check stopped it); what was
            # queued stays queued and the watermark stays where it was.
            summary.failed += 1
            summary.errors.append(str(exc))
        if progress is not None:
            progress(summary)
        return summary

    def _named_deals(self, summary: ResyncSummary, request: ResyncRequest) -> None:
        """`--deal ID`: each named deal read (one batch) so its loss is judged like a swept one."""
        properties = signature_properties(RecordKind.DEAL, self.rules)
        found = {d.id: d for d in self.gateway.batch_read(ObjectType.DEAL, request.deal_ids, properties)}
        for deal_id in request.deal_ids:
            summary.deals_found += 1
            deal = found.get(deal_id)
            if deal is None:  # gone from HubSpot: the engine settles it (and drops what it kept)
                self._sent.add((RecordKind.DEAL, deal_id))
                self._deliver(summary, RecordKind.DEAL, deal_id, request.dry_run)
                continue
            self._send(summary, RecordKind.DEAL, deal, request.dry_run)

    def _sweep_deals(
        self, summary: ResyncSummary, request: ResyncRequest, on_page: Callable[[], None]
    ) -> None:
        lost = all_lost_stage_ids(self.gateway.deal_pipelines(), self.rules.deals)
        if not lost:
            summary.errors.append("no closed-lost stage in any deal pipeline: no deal to look for")
            return
        groups = chunk_in_filter("dealstage", sorted(lost))
        for deal in self._walk(RecordKind.DEAL, ObjectType.DEAL, groups, request, on_page):
            summary.deals_found += 1
            self._send(summary, RecordKind.DEAL, deal, request.dry_run)

    def _sweep_contacts(
        self, summary: ResyncSummary, request: ResyncRequest, on_page: Callable[[], None]
    ) -> None:
        leads = self.rules.leads
        groups = [[SearchFilter(leads.status_property, "EQ", leads.unqualified_value)]]
        for contact in self._walk(RecordKind.CONTACT, ObjectType.CONTACT, groups, request, on_page):
            summary.contacts_found += 1
            self._send(summary, RecordKind.CONTACT, contact, request.dry_run)

    def _walk(
        self,
        kind: RecordKind,
        object_type: ObjectType,
        groups: Sequence[Sequence[SearchFilter]],
        request: ResyncRequest,
        on_page: Callable[[], None],
    ) -> Iterator[CrmObject]:
        """Records of `groups` modified in the request's window, with what their loss signature reads."""
        return walk_modified(
            self.gateway,
            object_type,
            groups,
            since=request.since,
            until=request.until,
            properties=signature_properties(kind, self.rules),
            page_size=self.page_size,
            result_cap=self.result_cap,
            on_page=on_page,
        )

    def _send(self, summary: ResyncSummary, kind: RecordKind, record: CrmObject, dry_run: bool) -> None:
        if self.done.is_done(kind, record.id, loss_signature(kind, record, self.rules)):
            summary.already_done += 1
            return
        self._sent.add((kind, record.id))
        self._deliver(summary, kind, record.id, dry_run)

    def _deliver(self, summary: ResyncSummary, kind: RecordKind, object_id: str, dry_run: bool) -> None:
        if dry_run:
            summary.queued += 1  # would be queued
            return
        try:
            sent = send(self.sink, kind, object_id)
        except Exception as exc:
            summary.failed += 1
            summary.errors.append(f"{kind} {object_id}: {exc}")
            log.warning("resync could not hand off %s %s: %s", kind, object_id, exc)
        else:
            if sent:
                summary.queued += 1
            else:
                summary.already_queued += 1
        if self._progress is not None:
            self._progress(summary)  # throttled by the callback; inline handoffs can be slow


class _OncePerSweep:
    """Passes a record on unless this sweep already sent it."""

    def __init__(self, sink: HandoffSink, sent: set[tuple[RecordKind, str]]) -> None:
        self.sink = sink
        self.sent = sent

    def deal(self, deal_id: str) -> bool:
        return self._once(RecordKind.DEAL, deal_id)

    def contact(self, contact_id: str) -> bool:
        return self._once(RecordKind.CONTACT, contact_id)

    def _once(self, kind: RecordKind, object_id: str) -> bool:
        if (kind, object_id) in self.sent:
            return False
        self.sent.add((kind, object_id))
        return send(self.sink, kind, object_id)


class WaitingRevisit(Protocol):
    """Deals waiting for a lost reason: re-run those that now have one, escalate overdue ones."""

    def revisit(self, summary: ResyncSummary, *, dry_run: bool, sink: HandoffSink) -> None: ...


class LedgerDoneCheck:
    """The engine's ledger: a record whose latest loss was handed off in full is not queued again,
    as long as HubSpot still shows that loss (same stage, close date and reason). A deal reopened
    and lost again shows another close date or reason, so it is queued even if no webhook told."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def is_done(self, kind: RecordKind, object_id: str, seen: LossSignature) -> bool:
        return self.ledger.is_complete(kind, object_id, seen)


def run_locked(
    client: redis.Redis,
    resync: Resync,
    request: ResyncRequest,
    *,
    wait_seconds: float = 0.0,
    advance_watermark: bool = False,
    progress: ProgressCallback | None = None,
    lock_ttl_seconds: float = 60.0,
) -> ResyncSummary:
    """Run one sweep under the cross-host lock. Raises SweepBusyError when another sweep runs.

    With `advance_watermark`, a sweep that finished without failures moves the watermark to its
    window's end; a failed sweep leaves it, so the next one covers the same ground again.
    """
    if request.dry_run:
        # A dry run changes nothing, not even the lock, so it can run beside a real sweep.
        return resync.run(request, progress=progress)
    lock = SweepLock(client, ttl_seconds=lock_ttl_seconds)
    if not lock.acquire(wait_seconds=wait_seconds):
        raise SweepBusyError(
            f"another resync is running (lock {LOCK_KEY} is held); it covers the same deals. "
            "Wait for it, or pass --wait SECONDS to queue behind it."
        )
    with lock:
        summary = resync.run(request, progress=progress, lock=lock)
        lock.check()
        if summary.ok and advance_watermark:
            write_watermark(client, request.until)
    return summary
