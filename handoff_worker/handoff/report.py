"""The closed-loop report: per reason, for lost deals and disqualified leads, how many people were
handed to marketing, how many came back to sales, how many of those then won, and for how much.

Counting is `domain.closed_loop.count_loop` (pure). This module gathers what it counts, at the
edges: the engine's audit records (the losses and their reasons), the contact journeys (one
episode per person handed to marketing, and whether it came back) and HubSpot, read in batches
only: the contacts' original source, the deals of the contacts that came back, and those deals'
stage, close date and amount. Rendering is separate from counting so every format shows the same
numbers (the HTML page is `report_html`; `RENDERERS` there names every format).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from statistics import median
from typing import Any

import redis

from handoff_worker.domain.closed_loop import (
    EpisodeRecord,
    Funnel,
    LoopFigures,
    LossKind,
    LossRecord,
    Period,
    WonDeal,
    count_loop,
)
from handoff_worker.domain.journey import Journey, JourneyState
from handoff_worker.domain.models import ObjectType, RecordKind
from handoff_worker.domain.nurture import NurtureRules
from handoff_worker.domain.rules import DealStatus
from handoff_worker.handoff.audit import AUDIT_CAP, recent_audits
from handoff_worker.handoff.journeys import JourneyStore
from handoff_worker.handoff.ledger import Ledger
from handoff_worker.handoff.stages import PipelineCache
from handoff_worker.hubspot.protocol import HubSpotGateway

SOURCE_PROPERTY = "hs_analytics_source"
# Deal amounts: the portal's own currency first (HubSpot computes it for multi-currency portals).
AMOUNT_PROPERTIES = ("amount_in_home_currency", "amount")
WON_DEAL_PROPERTIES = ("pipeline", "dealstage", "closedate", *AMOUNT_PROPERTIES)

KIND_NAMES = {LossKind.DEAL: "Lost deals", LossKind.LEAD: "Disqualified leads"}
# HubSpot's values of the contact's "Original source", as its UI names them.
SOURCE_NAMES = {
    "ORGANIC_SEARCH": "Organic search",
    "PAID_SEARCH": "Paid search",
    "EMAIL_MARKETING": "Email marketing",
    "SOCIAL_MEDIA": "Organic social",
    "PAID_SOCIAL": "Paid social",
    "REFERRALS": "Referrals",
    "OTHER_CAMPAIGNS": "Other campaigns",
    "DIRECT_TRAFFIC": "Direct traffic",
    "OFFLINE": "Offline sources",
    "AI_REFERRALS": "AI referrals",
    "": "Unknown source",
}


def source_name(value: str) -> str:
    return SOURCE_NAMES.get(value, value.replace("_", " ").capitalize())


@dataclass(frozen=True)
class WaitingDeal:
    deal_id: str
    since: datetime


@dataclass
class Report:
    figures: LoopFigures
    waiting: list[WaitingDeal]
    hubspot_calls: int = 0

    @property
    def since(self) -> datetime:
        return self.figures.period.start

    @property
    def until(self) -> datetime:
        return self.figures.period.end

    @property
    def waiting_hours(self) -> list[float]:
        return sorted((self.until - w.since).total_seconds() / 3600 for w in self.waiting)

    def as_dict(self) -> dict[str, object]:
        hours = self.waiting_hours
        figures = self.figures
        previous = figures.period.before()
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "overall": figures.overall.as_dict(),
            "previous_period": {
                "since": previous.start.isoformat(),
                "until": previous.end.isoformat(),
                **figures.previous.as_dict(),
            },
            "by_kind": {kind.value: figures.by_kind[kind].as_dict() for kind in LossKind},
            "reasons": [
                {"kind": line.kind.value, "reason": line.reason, **line.funnel.as_dict()}
                for line in figures.reasons
            ],
            "sources": [
                {"source": line.source, "source_name": source_name(line.source), **line.funnel.as_dict()}
                for line in figures.sources
            ],
            "waiting_for_reason": {
                "deals": len(hours),
                "median_hours": round(median(hours), 1) if hours else 0.0,
                "oldest_hours": round(hours[-1], 1) if hours else 0.0,
            },
            "hubspot_calls": self.hubspot_calls,
        }


# --------------------------------------------------------------------------- gathering


def losses_from_audits(audits: Iterable[Mapping[str, Any]]) -> tuple[list[LossRecord], dict[str, str]]:
    """Each loss with a reason once, at its first run (a retry, a resync or a replay of the same loss
    adds nothing), and every loss id's reason label. Dry runs are left out."""
    first: dict[str, LossRecord] = {}
    reasons: dict[str, str] = {}
    for audit in sorted(audits, key=lambda a: str(a.get("at", ""))):
        loss_id = str(audit.get("loss_id") or "")
        if audit.get("dry_run") or not loss_id or not audit.get("reason"):
            continue
        at = _parse_time(str(audit.get("at") or ""))
        kind = _kind_of(loss_id)
        if at is None or kind is None:
            continue
        reasons[loss_id] = str(audit["reason"])
        first.setdefault(loss_id, LossRecord(loss_id, kind, reasons[loss_id], at))
    return list(first.values()), reasons


def episodes_from_journeys(
    histories: Mapping[str, Sequence[Journey]], reasons: Mapping[str, str]
) -> list[EpisodeRecord]:
    """One record per episode (past and current) of each contact. The reason is that of the loss that
    started the episode (from the audit records; the episode's own reason when they no longer hold it)."""
    records: list[EpisodeRecord] = []
    for contact_id, history in histories.items():
        by_number = {j.episode.number: j.episode for j in history if j.episode.number > 0}
        ordered = [by_number[n] for n in sorted(by_number)]
        for index, episode in enumerate(ordered):
            started = _parse_time(episode.since)
            if started is None or not episode.sources:
                continue
            start = episode.sources[0].loss_id
            kind = _kind_of(start) or LossKind.DEAL
            back = (
                _parse_time(episode.came_back_at or "") if episode.state is JourneyState.CAME_BACK else None
            )
            following = ordered[index + 1] if index + 1 < len(ordered) else None
            records.append(
                EpisodeRecord(
                    contact_id=contact_id,
                    number=episode.number,
                    kind=kind,
                    reason=reasons.get(start) or episode.reason or "(no reason)",
                    started=started,
                    came_back=back,
                    next_started=_parse_time(following.since) if following else None,
                )
            )
    return records


def won_deals_of(
    gateway: HubSpotGateway, pipelines: PipelineCache, rules: NurtureRules, contact_ids: Sequence[str]
) -> dict[str, list[WonDeal]]:
    """Each contact's closed-won deals: one batch association read per 1,000 contacts, one batch
    read per 100 deals, and the deal pipelines (from the shared cache)."""
    if not contact_ids:
        return {}
    deals_by_contact = gateway.batch_associated_ids(ObjectType.CONTACT, list(contact_ids), ObjectType.DEAL)
    deal_ids = sorted({d for deals in deals_by_contact.values() for d in deals})
    if not deal_ids:
        return {}
    catalog = pipelines.catalog(rules.deals)
    won: dict[str, WonDeal] = {}
    for deal in gateway.batch_read(ObjectType.DEAL, deal_ids, list(WON_DEAL_PROPERTIES)):
        closed = _parse_time(deal.get("closedate"))
        if (
            closed is None
            or catalog.status(deal.get("pipeline"), deal.get("dealstage")) is not DealStatus.WON
        ):
            continue
        won[deal.id] = WonDeal(deal.id, closed, _amount(deal.properties))
    return {contact_id: [won[d] for d in deals if d in won] for contact_id, deals in deals_by_contact.items()}


def original_sources(gateway: HubSpotGateway, contact_ids: Sequence[str]) -> dict[str, str]:
    """Each contact's original source (one batch read per 100 contacts)."""
    if not contact_ids:
        return {}
    contacts = gateway.batch_read(ObjectType.CONTACT, list(contact_ids), [SOURCE_PROPERTY])
    return {contact.id: contact.get(SOURCE_PROPERTY) or "" for contact in contacts}


def closed_loop_report(
    client: redis.Redis,
    gateway: HubSpotGateway,
    rules: NurtureRules,
    *,
    since: datetime,
    until: datetime,
) -> Report:
    """The loop for [since, until) and the period of the same length before it."""
    calls_before = gateway.calls_made
    period = Period(since, until)
    losses, reasons = losses_from_audits(recent_audits(client, AUDIT_CAP))
    store = JourneyStore(client)
    episodes = episodes_from_journeys(store.histories(sorted(store.contact_ids())), reasons)
    earliest = period.before().start
    counted = [e for e in episodes if earliest <= e.started < until]
    in_period = sorted({e.contact_id for e in counted if e.started >= since})
    came_back = sorted({e.contact_id for e in counted if e.came_back is not None})
    won = won_deals_of(gateway, PipelineCache(client, gateway), rules, came_back)
    sources = original_sources(gateway, in_period)
    never_nurtured = frozenset(reason.label for reason in rules.reasons if not reason.recycle)
    figures = count_loop(losses, counted, won, sources, never_nurtured=never_nurtured, period=period)
    waiting = [
        WaitingDeal(w.object_id, datetime.fromisoformat(w.since))
        for w in Ledger(client).list_waiting()
        if w.kind is RecordKind.DEAL
    ]
    return Report(figures, waiting, hubspot_calls=gateway.calls_made - calls_before)


_KIND_OF_RECORD = {RecordKind.DEAL.value: LossKind.DEAL, RecordKind.CONTACT.value: LossKind.LEAD}


def _kind_of(loss_id: str) -> LossKind | None:
    """A loss id starts with its record's kind ("deal:2001:1", "contact:3006:1")."""
    return _KIND_OF_RECORD.get(loss_id.split(":", 1)[0])


def _amount(properties: Mapping[str, str | None]) -> float:
    for name in AMOUNT_PROPERTIES:
        raw = (properties.get(name) or "").strip()
        if raw:
            try:
                return float(raw)
            except ValueError:
                continue
    return 0.0


def _parse_time(raw: str | None) -> datetime | None:
    if not raw:
        return None
    if raw.isdigit():
        return datetime.fromtimestamp(int(raw) / 1000, tz=UTC)
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# --------------------------------------------------------------------------- words and numbers


def percent(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.0%}"


def money(amount: float) -> str:
    return f"{amount:,.0f}"


def days(value: float | None) -> str:
    """A time to come back, in days; under a day, in hours."""
    if value is None:
        return "-"
    return f"{value * 24:.0f} h" if value < 1 else f"{value:.1f} d"


def recycled_text(funnel: Funnel) -> str:
    return "not nurtured" if funnel.recycled is None else str(funnel.recycled)


def change_text(now: float, before: float) -> str:
    """'+3 (+50%)' against the previous period; 'new' when there was nothing before."""
    if before == 0:
        return "same" if now == 0 else "new"
    delta = now - before
    if delta == 0:
        return "same"
    return f"{delta:+,.0f} ({delta / before:+.0%})"


# --------------------------------------------------------------------------- rendering

TABLE_HEADER = (
    "reason",
    "lost",
    "recycled",
    "came back",
    "back rate",
    "won",
    "won rate",
    "revenue",
    "median time back",
)


def funnel_cells(label: str, funnel: Funnel) -> tuple[str, ...]:
    """One table row of a funnel, as plain text (the terminal table and the HTML page share it)."""
    return (
        label,
        "-" if funnel.lost is None else str(funnel.lost),
        recycled_text(funnel),
        str(funnel.came_back),
        percent(funnel.came_back_rate),
        str(funnel.won),
        percent(funnel.won_rate),
        money(funnel.revenue),
        days(funnel.median_days_to_come_back),
    )


def _columns(rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    ]


def render_table(report: Report) -> str:
    figures = report.figures
    overall, previous = figures.overall, figures.previous
    text = [f"closed-loop report {report.since:%Y-%m-%d} .. {report.until:%Y-%m-%d}", ""]
    headline = [
        ("lost", overall.lost or 0, previous.lost or 0),
        ("recycled", overall.recycled or 0, previous.recycled or 0),
        ("came back", overall.came_back, previous.came_back),
        ("came back and won", overall.won, previous.won),
        ("revenue", overall.revenue, previous.revenue),
    ]
    rows = [("", "this period", "previous period", "change")]
    for label, now, before in headline:
        rows.append((label, money(now), money(before), change_text(now, before)))
    text += _columns(rows)
    for kind in LossKind:
        lines = [line for line in figures.reasons if line.kind is kind]
        text += ["", KIND_NAMES[kind]]
        table = [TABLE_HEADER, *(funnel_cells(line.reason, line.funnel) for line in lines)]
        table.append(funnel_cells("all reasons", figures.by_kind[kind]))
        text += _columns(table)
    text += ["", "By original source"]
    source_rows = [funnel_cells(source_name(line.source), line.funnel) for line in figures.sources]
    text += _columns([("source", *TABLE_HEADER[1:]), *source_rows])
    text.append("")
    hours = report.waiting_hours
    if hours:
        text.append(
            f"waiting for a reason: {len(hours)} deal(s), median {median(hours):.1f} h, "
            f"oldest {hours[-1]:.1f} h"
        )
    else:
        text.append("waiting for a reason: none")
    return "\n".join(text) + "\n"


CSV_FIELDS = (
    "group",
    "kind",
    "name",
    "lost",
    "recycled",
    "came_back",
    "came_back_and_won",
    "revenue",
    "came_back_rate",
    "won_rate",
    "recycled_to_won_rate",
    "median_days_to_come_back",
)


def render_csv(report: Report) -> str:
    """One row per line of the report: `group` is reason, kind (all reasons of a kind), overall,
    previous_period or source."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS)
    writer.writeheader()
    figures = report.figures

    def row(group: str, kind: str, name: str, funnel: Funnel) -> None:
        values = funnel.as_dict()
        writer.writerow(
            {
                "group": group,
                "kind": kind,
                "name": name,
                **{k: "" if v is None else v for k, v in values.items() if k in CSV_FIELDS},
            }
        )

    for line in figures.reasons:
        row("reason", line.kind.value, line.reason, line.funnel)
    for kind in LossKind:
        row("kind", kind.value, KIND_NAMES[kind], figures.by_kind[kind])
    row("overall", "", "all", figures.overall)
    row("previous_period", "", "all", figures.previous)
    for source in figures.sources:
        row("source", "", source.source or "UNKNOWN", source.funnel)
    return out.getvalue()


def render_json(report: Report) -> str:
    return json.dumps(report.as_dict(), indent=2) + "\n"
