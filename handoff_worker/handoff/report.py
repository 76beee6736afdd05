"""The closed-loop report: per lost reason, what the handoff did and how many recycled contacts
came back to sales.

Figures come from the engine's audit records (what was done, when, why) and HubSpot's current
state (one batch read of the recycled contacts, plus their deals' creation dates). Rendering is
separate from counting so every format shows the same numbers.
"""

from __future__ import annotations

import csv
import html
import io
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from statistics import median
from typing import Any

import redis

from handoff_worker.domain.models import ObjectType, RecordKind
from handoff_worker.domain.rules import LIFECYCLE_ORDER, LIFECYCLE_PROPERTY
from handoff_worker.handoff.audit import AUDIT_CAP, recent_audits
from handoff_worker.handoff.ledger import Ledger
from handoff_worker.handoff.run_record import ContactOutcome
from handoff_worker.hubspot.protocol import HubSpotGateway

# A recycled contact whose lifecycle stage moved past `lead` has come back. Stages outside HubSpot's
# order (`other`, a portal's own) are not counted as back: nobody knows where they sit.
STAGES_PAST_LEAD = frozenset(LIFECYCLE_ORDER[LIFECYCLE_ORDER.index("lead") + 1 :])
NO_REASON = "(no reason)"
RECYCLED_OUTCOMES = frozenset({ContactOutcome.RECYCLED, ContactOutcome.RESUMED})


@dataclass(frozen=True)
class DealHandoff:
    """One deal's completed handoff, as the audit records tell it."""

    deal_id: str
    reason: str
    at: datetime
    recycled: Mapping[str, datetime]  # contact id -> when it was recycled
    skipped: Mapping[str, str] = field(default_factory=dict)  # contact id -> why
    enrolled: Mapping[str, int] = field(default_factory=dict)  # nurture name -> contacts


@dataclass(frozen=True)
class WaitingDeal:
    deal_id: str
    since: datetime


@dataclass
class ReasonLine:
    reason: str
    deals_lost: int = 0
    contacts_recycled: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    enrolled: Counter[str] = field(default_factory=Counter)
    came_back: int = 0

    @property
    def came_back_rate(self) -> float:
        return self.came_back / self.contacts_recycled if self.contacts_recycled else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "reason": self.reason,
            "deals_lost": self.deals_lost,
            "contacts_recycled": self.contacts_recycled,
            "skipped": dict(sorted(self.skipped.items())),
            "enrolled": dict(sorted(self.enrolled.items())),
            "came_back": self.came_back,
            "came_back_rate": round(self.came_back_rate, 4),
        }


@dataclass
class Report:
    since: datetime
    until: datetime
    lines: list[ReasonLine]
    waiting: list[WaitingDeal]

    @property
    def waiting_hours(self) -> list[float]:
        return sorted((self.until - w.since).total_seconds() / 3600 for w in self.waiting)

    def as_dict(self) -> dict[str, object]:
        hours = self.waiting_hours
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "reasons": [line.as_dict() for line in self.lines],
            "waiting_for_reason": {
                "deals": len(hours),
                "median_hours": round(median(hours), 1) if hours else 0.0,
                "oldest_hours": round(hours[-1], 1) if hours else 0.0,
            },
        }


def build_report(
    handoffs: Iterable[DealHandoff],
    waiting: Sequence[WaitingDeal],
    came_back: set[str],
    *,
    since: datetime,
    until: datetime,
) -> Report:
    """Count per reason. `came_back` holds the recycled contact ids now back with sales."""
    lines: dict[str, ReasonLine] = {}
    counted_back: set[tuple[str, str]] = set()
    for handoff in handoffs:
        line = lines.setdefault(handoff.reason, ReasonLine(handoff.reason))
        line.deals_lost += 1
        line.contacts_recycled += len(handoff.recycled)
        line.skipped.update(handoff.skipped.values())
        line.enrolled.update(handoff.enrolled)
        for contact_id in handoff.recycled:
            # A contact recycled by two deals of one reason counts back once for that reason.
            if contact_id in came_back and (handoff.reason, contact_id) not in counted_back:
                counted_back.add((handoff.reason, contact_id))
                line.came_back += 1
    ordered = sorted(lines.values(), key=lambda line: (-line.deals_lost, line.reason))
    return Report(since=since, until=until, lines=ordered, waiting=list(waiting))


def contacts_back_in_sales(gateway: HubSpotGateway, recycled: Mapping[str, datetime]) -> set[str]:
    """Recycled contacts whose lifecycle stage is now past `lead`, or that have a deal created after
    they were recycled. One batch read of contacts, one batch association read, and one batch read
    of only the deals still undecided."""
    if not recycled:
        return set()
    ids = sorted(recycled)
    contacts = gateway.batch_read(ObjectType.CONTACT, ids, [LIFECYCLE_PROPERTY])
    back = {c.id for c in contacts if c.get(LIFECYCLE_PROPERTY) in STAGES_PAST_LEAD}
    undecided = [i for i in ids if i not in back]
    if not undecided:
        return back
    deals_by_contact = gateway.batch_associated_ids(ObjectType.CONTACT, undecided, ObjectType.DEAL)
    deal_ids = sorted({d for deals in deals_by_contact.values() for d in deals})
    if not deal_ids:
        return back
    created = {
        deal.id: _parse_time(deal.get("createdate"))
        for deal in gateway.batch_read(ObjectType.DEAL, deal_ids, ["createdate"])
    }
    for contact_id, deals in deals_by_contact.items():
        recycled_at = recycled[contact_id]
        if any((created.get(d) or recycled_at) > recycled_at for d in deals):
            back.add(contact_id)
    return back


def _parse_time(raw: str | None) -> datetime | None:
    if not raw:
        return None
    if raw.isdigit():
        return datetime.fromtimestamp(int(raw) / 1000, tz=UTC)
    return datetime.fromisoformat(raw.replace("Z", "+00:00"))


def handoffs_from_audits(audits: Iterable[Mapping[str, Any]], *, since: datetime) -> list[DealHandoff]:
    """Fold the engine's audit records (one per run) into one handoff per loss with a reason.

    A loss may take several runs (a retry, a resync, a replay): contacts recycled in any run count
    once, at their first recycle; a contact skipped in one run and recycled in a later one counts
    as recycled; dry runs and runs before `since` are left out.
    """
    by_loss: dict[str, _LossFold] = {}
    for audit in sorted(audits, key=lambda a: str(a.get("at", ""))):
        if audit.get("kind") != RecordKind.DEAL or audit.get("dry_run") or not audit.get("loss_id"):
            continue
        at = _parse_time(str(audit.get("at") or ""))
        if at is None or at < since:
            continue
        fold = by_loss.setdefault(str(audit["loss_id"]), _LossFold(str(audit["object_id"]), at))
        fold.add(audit, at)
    return [fold.handoff() for fold in by_loss.values() if fold.reason is not None]


@dataclass
class _LossFold:
    deal_id: str
    first_at: datetime
    reason: str | None = None
    recycled: dict[str, datetime] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    enrolled: set[tuple[str, str]] = field(default_factory=set)

    def add(self, audit: Mapping[str, Any], at: datetime) -> None:
        if audit.get("reason"):
            self.reason = str(audit["reason"])
        contacts: Mapping[str, Mapping[str, Any]] = audit.get("contacts") or {}
        for contact_id, contact in contacts.items():
            outcome = contact.get("outcome")
            if outcome in RECYCLED_OUTCOMES:
                self.recycled.setdefault(contact_id, at)
            elif outcome == ContactOutcome.SKIPPED:
                # The engine writes "<why>: <detail>"; the report groups by the why.
                self.skipped[contact_id] = str(contact.get("why", "")).split(":", 1)[0] or "unknown"
        for enrollment in audit.get("enrollments") or ():
            self.enrolled.add((str(enrollment.get("contact")), str(enrollment.get("name") or "")))

    def handoff(self) -> DealHandoff:
        return DealHandoff(
            deal_id=self.deal_id,
            reason=self.reason or NO_REASON,
            at=self.first_at,
            recycled=dict(self.recycled),
            skipped={c: why for c, why in self.skipped.items() if c not in self.recycled},
            enrolled=dict(Counter(name for _, name in self.enrolled)),
        )


# --------------------------------------------------------------------------- rendering


def _counter_text(counter: Mapping[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in sorted(counter.items())) or "-"


def render_table(report: Report) -> str:
    header = ("reason", "deals", "recycled", "came back", "rate", "skipped", "enrolled")
    rows = [
        (
            line.reason,
            str(line.deals_lost),
            str(line.contacts_recycled),
            str(line.came_back),
            f"{line.came_back_rate:.0%}",
            _counter_text(line.skipped),
            _counter_text(line.enrolled),
        )
        for line in report.lines
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    text = [f"closed-loop report {report.since:%Y-%m-%d} .. {report.until:%Y-%m-%d}", ""]
    for row in [header, *rows]:
        text.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
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


def render_csv(report: Report) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        ["reason", "deals_lost", "contacts_recycled", "came_back", "came_back_rate", "skipped", "enrolled"]
    )
    for line in report.lines:
        writer.writerow(
            [
                line.reason,
                line.deals_lost,
                line.contacts_recycled,
                line.came_back,
                f"{line.came_back_rate:.4f}",
                "; ".join(f"{k}={v}" for k, v in sorted(line.skipped.items())),
                "; ".join(f"{k}={v}" for k, v in sorted(line.enrolled.items())),
            ]
        )
    return out.getvalue()


def render_json(report: Report) -> str:
    return json.dumps(report.as_dict(), indent=2) + "\n"


_BAR_WIDTH = 320


def _svg_bars(line: ReasonLine, scale: int) -> str:
    """Three bars: deals lost, contacts recycled, came back; one scale across every reason."""
    bars = [("deals lost", line.deals_lost, "#6b7280"), ("recycled", line.contacts_recycled, "#2563eb")]
    bars.append(("came back", line.came_back, "#16a34a"))
    parts = []
    for index, (label, value, colour) in enumerate(bars):
        y = index * 22
        width = round(_BAR_WIDTH * value / scale) if scale else 0
        parts.append(
            f'<text x="0" y="{y + 14}" font-size="12">{label}</text>'
            f'<rect x="80" y="{y + 3}" width="{width}" height="14" fill="{colour}"/>'
            f'<text x="{86 + width}" y="{y + 14}" font-size="12">{value}</text>'
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_BAR_WIDTH + 140}" height="66" role="img" '
        f'aria-label="{html.escape(line.reason)}">{"".join(parts)}</svg>'
    )


def render_html(report: Report) -> str:
    """One self-contained page: no script, no external file, one inline SVG chart per reason."""
    scale = max([max(line.deals_lost, line.contacts_recycled) for line in report.lines] or [0])
    sections = []
    for line in report.lines:
        sections.append(
            f"<section><h2>{html.escape(line.reason)}</h2>{_svg_bars(line, scale)}"
            f"<p>came back to sales: {line.came_back} of {line.contacts_recycled} "
            f"({line.came_back_rate:.0%})</p>"
            f"<p>skipped: {html.escape(_counter_text(line.skipped))}</p>"
            f"<p>enrolled: {html.escape(_counter_text(line.enrolled))}</p></section>"
        )
    hours = report.waiting_hours
    waiting = (
        f"{len(hours)} deal(s) waiting for a reason, median {median(hours):.1f} h, oldest {hours[-1]:.1f} h"
        if hours
        else "no deal waiting for a reason"
    )
    title = f"Closed-loop report {report.since:%Y-%m-%d} to {report.until:%Y-%m-%d}"
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{title}</title><style>body{{font-family:sans-serif;max-width:48rem;margin:2rem auto}}"
        "section{border-top:1px solid #ddd;padding:.5rem 0}</style></head><body>"
        f"<h1>{title}</h1><p>{waiting}</p>{''.join(sections)}</body></html>\n"
    )


RENDERERS = {"table": render_table, "csv": render_csv, "json": render_json, "html": render_html}


def closed_loop_report(
    client: redis.Redis, gateway: HubSpotGateway, *, since: datetime, until: datetime
) -> Report:
    """Audit records (what was done) plus HubSpot's current state (who came back)."""
    handoffs = handoffs_from_audits(recent_audits(client, AUDIT_CAP), since=since)
    recycled: dict[str, datetime] = {}
    for handoff in handoffs:
        for contact_id, at in handoff.recycled.items():
            recycled[contact_id] = min(at, recycled.get(contact_id, at))
    back = contacts_back_in_sales(gateway, recycled)
    waiting = [
        WaitingDeal(w.object_id, datetime.fromisoformat(w.since))
        for w in Ledger(client).list_waiting()
        if w.kind is RecordKind.DEAL
    ]
    return build_report(handoffs, waiting, back, since=since, until=until)
