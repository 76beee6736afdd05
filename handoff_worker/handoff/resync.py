"""Resync: find lost deals and unqualified leads that webhooks missed, and hand them off.

A sweep searches HubSpot for every deal in a closed-lost stage and every contact in the
unqualified lead status modified inside a window, and sends each through the same idempotent
handoff as a webhook would. What the ledger says is done is skipped; the rest is queued.

The walk sorts ascending by the modified-date property and starts every page as a new query from
the last timestamp seen (keyset pagination), skipping ids it already yielded. HubSpot's `after` is
an offset: records modified during the walk (the sweep's own handoffs modify them) would shift the
offsets and make it step over records. A fresh query also never meets the 10,000-results-per-query
cap, except inside one run of records sharing a timestamp, the only place `after` is used.

Only one sweep runs at a time across every host (a Redis lock with a token, renewed while the sweep
runs). The scheduled sweep starts from the last successful sweep's watermark minus a lookback
(search lags writes by seconds) and moves the watermark only when it finished without failures.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Protocol

import redis

from handoff_worker.domain.models import CrmObject, ObjectType, Pipeline, RecordKind, SearchFilter
from handoff_worker.domain.nurture import DealRules, NurtureRules
from handoff_worker.domain.rules import lost_stage_ids
from handoff_worker.errors import HandoffError
from handoff_worker.handoff.ledger import Ledger, Waiting
from handoff_worker.handoff.lock import RenewedLock
from handoff_worker.handoff.owner_tasks import ReasonReminders, is_overdue, reason_property_for
from handoff_worker.hubspot.protocol import HubSpotGateway
from handoff_worker.state import KEY_PREFIX

log = logging.getLogger(__name__)

# HubSpot's search limits: 200 results a page, 10,000 results per query, at most 5 filter groups
# of at most 6 filters. IN lists are kept to 100 values each, HubSpot's documented maximum.
SEARCH_PAGE_SIZE = 200
SEARCH_RESULT_CAP = 10_000
MAX_FILTER_GROUPS = 5
MAX_IN_VALUES = 100

# Deals and contacts name their last-modified property differently.
MODIFIED_PROPERTY: dict[ObjectType, str] = {
    ObjectType.DEAL: "hs_lastmodifieddate",
    ObjectType.CONTACT: "lastmodifieddate",
}

LOCK_KEY = f"{KEY_PREFIX}resync:lock"
WATERMARK_KEY = f"{KEY_PREFIX}resync:watermark"
# Without a watermark (first sweep ever) the scheduled sweep looks back this far.
FIRST_SWEEP_LOOKBACK = timedelta(days=1)

_RELATIVE_RE = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class ResyncError(HandoffError):
    """A sweep cannot run or cannot finish correctly."""


class SweepBusyError(ResyncError):
    """Another sweep holds the lock."""


# --------------------------------------------------------------------------- time


def parse_moment(text: str, *, now: datetime, option: str = "--since") -> datetime:
    """`24h`, `90d`, `30m`, `2w` (that long before `now`), or an ISO date/time (UTC if no zone)."""
    relative = _RELATIVE_RE.match(text)
    if relative:
        amount, unit = relative.groups()
        return now - timedelta(**{_UNITS[unit]: int(amount)})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ResyncError(
            f"{option} {text!r} is neither a duration nor a date: write e.g. {option} 24h, "
            f"{option} 90d or {option} 2026-11-01 (ISO dates and times, UTC unless a zone is given)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def to_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def modified_ms(record: CrmObject, property_name: str) -> int:
    """The record's last-modified time in ms. HubSpot returns ISO text; ms digits are accepted too."""
    raw = record.get(property_name)
    if raw:
        if raw.isdigit():
            return int(raw)
        return to_ms(datetime.fromisoformat(raw.replace("Z", "+00:00")))
    if record.updated_at is not None:
        return to_ms(record.updated_at)
    raise ResyncError(
        f"{record.id} came back from search without {property_name}: cannot order the walk by it"
    )


# --------------------------------------------------------------------------- search walk


def chunk_in_filter(property_name: str, values: Sequence[str]) -> list[list[SearchFilter]]:
    """One filter group per chunk of values (OR of groups), each an IN of at most 100 values."""
    ordered = sorted(set(values))
    return [
        [SearchFilter(property_name, "IN", values=tuple(ordered[i : i + MAX_IN_VALUES]))]
        for i in range(0, len(ordered), MAX_IN_VALUES)
    ]


def walk_modified(
    gateway: HubSpotGateway,
    object_type: ObjectType,
    filter_groups: Sequence[Sequence[SearchFilter]],
    *,
    since: datetime,
    until: datetime,
    properties: Sequence[str] = (),
    page_size: int = SEARCH_PAGE_SIZE,
    result_cap: int = SEARCH_RESULT_CAP,
    on_page: Callable[[], None] | None = None,
) -> Iterator[CrmObject]:
    """Every record matching any of `filter_groups` modified in [since, until], each once.

    More than 5 groups are split into several walks (HubSpot's limit per query). `on_page` is
    called after each page, e.g. to renew a lock or stop a sweep that lost it.
    """
    if not filter_groups:
        return
    # Ids already yielded, across every query of the walk: ids only, a few MB for 100,000 records.
    seen: set[str] = set()
    for start in range(0, len(filter_groups), MAX_FILTER_GROUPS):
        yield from _walk_one_query_set(
            gateway,
            object_type,
            filter_groups[start : start + MAX_FILTER_GROUPS],
            since_ms=to_ms(since),
            until_ms=to_ms(until),
            properties=properties,
            page_size=page_size,
            result_cap=result_cap,
            on_page=on_page,
            seen=seen,
        )


def _walk_one_query_set(
    gateway: HubSpotGateway,
    object_type: ObjectType,
    filter_groups: Sequence[Sequence[SearchFilter]],
    *,
    since_ms: int,
    until_ms: int,
    properties: Sequence[str],
    page_size: int,
    result_cap: int,
    on_page: Callable[[], None] | None,
    seen: set[str],
) -> Iterator[CrmObject]:
    """Keyset pagination: every page is a fresh query from the newest timestamp seen.

    HubSpot's `after` is an offset. A record modified while the walk runs (the sweep's own
    handoffs do that) moves past the sort position, everything behind it shifts back one place,
    and an offset would step over a record. A fresh query from the last timestamp cannot, so
    `after` is only used inside a run of records that all share the query's start timestamp, the
    one place a fresh query would make no progress.
    """
    modified = MODIFIED_PROPERTY[object_type]
    wanted = list(dict.fromkeys([*properties, modified]))
    last_stamp = since_ms
    while True:
        cursor = last_stamp
        groups = [
            [*group, SearchFilter(modified, "GTE", str(cursor)), SearchFilter(modified, "LTE", str(until_ms))]
            for group in filter_groups
        ]
        fetched = 0
        after: str | None = None
        while True:
            page = gateway.search(
                object_type,
                groups,
                properties=wanted,
                sort_property=modified,
                ascending=True,
                limit=page_size,
                after=after,
            )
            fetched += len(page.results)
            for record in page.results:
                # Results come sorted, so the last one's timestamp is where the next query starts.
                last_stamp = max(last_stamp, modified_ms(record, modified))
                if record.id in seen:
                    continue  # returned again at the seam, or modified after it was yielded
                seen.add(record.id)
                yield record
            if on_page is not None:
                on_page()
            if page.next_after is None or not page.results:
                return
            if last_stamp > cursor:
                break  # progress: the next page is a fresh query from the newest timestamp
            if fetched + page_size > result_cap:
                raise ResyncError(
                    f"more than {result_cap:,} {object_type.value} share {modified} = {cursor} ms: "
                    "search cannot page past them. Hand them off by id (resync --deal ID) or ask "
                    "HubSpot support; the sweep stopped here so the watermark does not move past them."
                )
            after = page.next_after  # a run at one timestamp longer than a page: page within it


# --------------------------------------------------------------------------- lost stages


def all_lost_stage_ids(pipelines: Sequence[Pipeline], deal_rules: DealRules) -> set[str]:
    """Every pipeline's lost stage ids in one set: stage ids are unique across an account's deal
    pipelines, so one `dealstage IN (...)` filter covers them all."""
    return {stage for stages in lost_stage_ids(pipelines, deal_rules).values() for stage in stages}


# --------------------------------------------------------------------------- lock


class SweepLock(RenewedLock):
    """One sweep at a time across hosts; a crashed sweep frees it within `ttl_seconds`. If renewal
    fails the sweep sees `lost` and stops."""

    def __init__(self, client: redis.Redis, *, key: str = LOCK_KEY, ttl_seconds: float = 60.0) -> None:
        super().__init__(client, key, ttl_seconds=ttl_seconds)

    def check(self) -> None:
        """Raise if the lock was lost, so a sweep never runs beside another one."""
        if self.lost:
            raise ResyncError(
                f"the resync lock {self.key} expired or was taken while this sweep ran; stopped so "
                "two sweeps never work at once. The next sweep picks up from the watermark."
            )

    def __enter__(self) -> SweepLock:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


# --------------------------------------------------------------------------- watermark


def read_watermark(client: redis.Redis) -> datetime | None:
    raw = client.get(WATERMARK_KEY)
    return datetime.fromisoformat(str(raw)) if raw else None


def write_watermark(client: redis.Redis, moment: datetime) -> None:
    client.set(WATERMARK_KEY, moment.astimezone(UTC).isoformat())


def scheduled_window(
    client: redis.Redis, *, now: datetime, lookback_minutes: int
) -> tuple[datetime, datetime]:
    """[watermark - lookback, now]; the first sweep ever looks back one day."""
    watermark = read_watermark(client)
    start = (watermark or now - FIRST_SWEEP_LOOKBACK) - timedelta(minutes=lookback_minutes)
    return start, now


# --------------------------------------------------------------------------- the sweep


class HandoffSink(Protocol):
    """Where found records go: queued for a Celery worker, run inline, or only counted (dry run)."""

    def deal(self, deal_id: str) -> None: ...

    def contact(self, contact_id: str) -> None: ...


def send(sink: HandoffSink, kind: RecordKind, object_id: str) -> None:
    """The sink's entry for the record's kind."""
    {RecordKind.DEAL: sink.deal, RecordKind.CONTACT: sink.contact}[kind](object_id)


class DoneCheck(Protocol):
    """The engine's ledger, asked whether a record's handoff is already complete."""

    def deal_done(self, deal_id: str) -> bool: ...

    def contact_done(self, contact_id: str) -> bool: ...


class NothingDone:
    """A ledger that knows nothing: every record is sent and the engine itself skips what is done."""

    def deal_done(self, deal_id: str) -> bool:
        return False

    def contact_done(self, contact_id: str) -> bool:
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
    waiting_for_reason: int = 0
    waiting_requeued: int = 0
    escalated: int = 0
    waiting_cleared: int = 0  # waiting records HubSpot no longer has (deleted): dropped
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
        page_size: int = SEARCH_PAGE_SIZE,
        result_cap: int = SEARCH_RESULT_CAP,
    ) -> None:
        self.gateway = gateway
        self.rules = rules
        self.sink = sink
        self.done: DoneCheck = done or NothingDone()
        self.waiting = waiting
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
                for deal_id in request.deal_ids:
                    summary.deals_found += 1
                    self._send(summary, RecordKind.DEAL, deal_id, request.dry_run)
            else:
                self._sweep_deals(summary, request, on_page)
                if request.include_contacts and self.rules.leads.enabled:
                    self._sweep_contacts(summary, request, on_page)
                if self.waiting is not None:
                    # A waiting deal whose reason was just set was modified, so the walk already
                    # sent it: the revisit must not send it a second time in the same sweep.
                    once = _OncePerSweep(self.sink, self._sent)
                    self.waiting.revisit(summary, dry_run=request.dry_run, sink=once)
        except HandoffError as exc:
            # The walk cannot go on (HubSpot failed, or the seam check stopped it); what was
            # queued stays queued and the watermark stays where it was.
            summary.failed += 1
            summary.errors.append(str(exc))
        if progress is not None:
            progress(summary)
        return summary

    def _sweep_deals(
        self, summary: ResyncSummary, request: ResyncRequest, on_page: Callable[[], None]
    ) -> None:
        lost = all_lost_stage_ids(self.gateway.deal_pipelines(), self.rules.deals)
        if not lost:
            summary.errors.append("no closed-lost stage in any deal pipeline: no deal to look for")
            return
        for deal in walk_modified(
            self.gateway,
            ObjectType.DEAL,
            chunk_in_filter("dealstage", sorted(lost)),
            since=request.since,
            until=request.until,
            properties=("dealstage",),
            page_size=self.page_size,
            result_cap=self.result_cap,
            on_page=on_page,
        ):
            summary.deals_found += 1
            self._send(summary, RecordKind.DEAL, deal.id, request.dry_run)

    def _sweep_contacts(
        self, summary: ResyncSummary, request: ResyncRequest, on_page: Callable[[], None]
    ) -> None:
        leads = self.rules.leads
        groups = [[SearchFilter(leads.status_property, "EQ", leads.unqualified_value)]]
        for contact in walk_modified(
            self.gateway,
            ObjectType.CONTACT,
            groups,
            since=request.since,
            until=request.until,
            properties=(leads.status_property,),
            page_size=self.page_size,
            result_cap=self.result_cap,
            on_page=on_page,
        ):
            summary.contacts_found += 1
            self._send(summary, RecordKind.CONTACT, contact.id, request.dry_run)

    def _send(self, summary: ResyncSummary, kind: RecordKind, object_id: str, dry_run: bool) -> None:
        is_done = {RecordKind.DEAL: self.done.deal_done, RecordKind.CONTACT: self.done.contact_done}[kind]
        if is_done(object_id):
            summary.already_done += 1
            return
        self._sent.add((kind, object_id))
        if dry_run:
            summary.queued += 1  # would be queued
            return
        try:
            send(self.sink, kind, object_id)
        except Exception as exc:
            summary.failed += 1
            summary.errors.append(f"{kind} {object_id}: {exc}")
            log.warning("resync could not hand off %s %s: %s", kind, object_id, exc)
        else:
            summary.queued += 1
        if self._progress is not None:
            self._progress(summary)  # throttled by the callback; inline handoffs can be slow


class _OncePerSweep:
    """Passes a record on unless this sweep already sent it."""

    def __init__(self, sink: HandoffSink, sent: set[tuple[RecordKind, str]]) -> None:
        self.sink = sink
        self.sent = sent

    def deal(self, deal_id: str) -> None:
        self._once(RecordKind.DEAL, deal_id)

    def contact(self, contact_id: str) -> None:
        self._once(RecordKind.CONTACT, contact_id)

    def _once(self, kind: RecordKind, object_id: str) -> None:
        if (kind, object_id) not in self.sent:
            self.sent.add((kind, object_id))
            send(self.sink, kind, object_id)


class WaitingRevisit(Protocol):
    """Deals waiting for a lost reason: re-run those that now have one, escalate overdue ones."""

    def revisit(self, summary: ResyncSummary, *, dry_run: bool, sink: HandoffSink) -> None: ...


class LedgerDoneCheck:
    """The engine's ledger: a record whose latest loss was handed off in full is not queued again."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def deal_done(self, deal_id: str) -> bool:
        return self.ledger.is_complete(RecordKind.DEAL, deal_id)

    def contact_done(self, contact_id: str) -> bool:
        return self.ledger.is_complete(RecordKind.CONTACT, contact_id)


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
