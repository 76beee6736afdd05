"""Run records (`handoff/run_record.py`) in words for the people who read them: marketers, sales ops.

The run record is data, with stable codes (`handed_off`, `open_deal: deal 1001 is open`); those
codes stay in `--json` output and logs. Everything a person reads (the demo, command summaries)
says it here, with the names of deals and people where the caller knows them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from handoff_worker.domain.rules import SkipReason
from handoff_worker.handoff.run_record import ContactOutcome, Outcome

RECORD_SENTENCES: dict[str, str] = {
    Outcome.STARTED: "still running, or stopped before it ended",
    Outcome.PARTIAL_FAILURE: "failed in part: kept in the failures list to replay",
    Outcome.ERROR: "HubSpot failed the handoff: it is tried again",
    Outcome.WAITING_FOR_REASON: "waiting for a lost reason: its owner was asked by a task",
    Outcome.DRY_RUN: "dry run: decided, nothing written to HubSpot",
    Outcome.NOT_FOUND: "no longer in HubSpot: nothing to do",
    Outcome.UNKNOWN_STAGE: "in a stage no pipeline lists: kept in the failures list to replay",
    Outcome.DEAL_OPEN: "still open: nothing to do",
    Outcome.DEAL_WON: "won: nothing to do",
    Outcome.DEAL_CLOSED_OTHER: "closed in a stage the nurture config leaves out: nothing to do",
    Outcome.NOT_UNQUALIFIED: "no longer disqualified: nothing to do",
}


@dataclass(frozen=True)
class Names:
    """What the caller knows of names: deal and contact ids -> names, owner ids -> names."""

    deals: Mapping[str, str] = field(default_factory=dict)
    contacts: Mapping[str, str] = field(default_factory=dict)
    owners: Mapping[str, str] = field(default_factory=dict)

    def deal(self, deal_id: str) -> str:
        return self.deals.get(deal_id) or f"deal {deal_id}"

    def contact(self, contact_id: str) -> str:
        return self.contacts.get(contact_id) or f"contact {contact_id}"

    def owner(self, owner_id: str) -> str:
        return self.owners.get(owner_id) or f"owner {owner_id}"


# Outcomes of a record that is not (or no longer) lost: its heading says no "(lost: ...)".
_NOT_A_LOSS = {Outcome.DEAL_OPEN, Outcome.DEAL_WON, Outcome.DEAL_CLOSED_OTHER, Outcome.NOT_UNQUALIFIED}


def record_heading(audit: Mapping[str, Any], names: Names) -> str:
    """One line for a run: which deal or lead, its reason, and what became of it as a whole."""
    object_id = str(audit.get("object_id", ""))
    if audit.get("kind") == "contact":
        subject, loss = f"Lead {names.contact(object_id)}", "disqualified"
    else:
        subject, loss = f"Deal {names.deal(object_id)}", "lost"
    reason = audit.get("reason")
    if audit.get("outcome") not in _NOT_A_LOSS:
        subject += f" ({loss}: {reason})" if reason else f" ({loss}, no reason yet)"
    return f"{subject}: {record_sentence(audit)}"


def record_lines(audit: Mapping[str, Any], names: Names) -> list[str]:
    """The heading, then one indented line per contact (a lead is its own only contact: one line)."""
    heading = record_heading(audit, names)
    contacts = audit.get("contacts") or {}
    object_id = str(audit.get("object_id", ""))
    if audit.get("kind") == "contact" and set(contacts) == {object_id}:
        subject = heading[: len(heading) - len(record_sentence(audit))]
        return [subject + contact_sentence(object_id, contacts[object_id], audit, names)]
    return [heading] + [
        f"    {names.contact(cid):12} {contact_sentence(cid, result, audit, names)}"
        for cid, result in sorted(contacts.items())
    ]


def record_sentence(audit: Mapping[str, Any]) -> str:
    """What became of the record as a whole, e.g. "2 of 2 contacts recycled"."""
    outcome = str(audit.get("outcome", ""))
    back = [c for c in (audit.get("contacts") or {}).values() if c.get("outcome") == ContactOutcome.CAME_BACK]
    if back and not audit.get("errors"):
        return f"open: {len(back)} recycled {'contact' if len(back) == 1 else 'contacts'} back with sales"
    if outcome != Outcome.HANDED_OFF:
        sentence = RECORD_SENTENCES.get(outcome, outcome)
        errors = [str(e) for e in audit.get("errors") or []]
        if outcome in {Outcome.PARTIAL_FAILURE, Outcome.ERROR, Outcome.UNKNOWN_STAGE} and errors:
            sentence += f" ({'; '.join(errors)})"
        return sentence
    contacts = audit.get("contacts") or {}
    moved = sum(
        1 for c in contacts.values() if c.get("outcome") in {ContactOutcome.RECYCLED, ContactOutcome.RESUMED}
    )
    if not contacts:
        return "no contacts to hand to marketing"
    if moved == 0:
        if _all_skipped_by_reason(contacts):
            return f"nobody recycled: {audit.get('reason')} is never nurtured"
        return "nobody recycled"
    noun = "contact" if len(contacts) == 1 else "contacts"
    return f"{moved} of {len(contacts)} {noun} recycled"


def _all_skipped_by_reason(contacts: Mapping[str, Any]) -> bool:
    return all(_skip_code(str(c.get("why", ""))) == SkipReason.NOT_RECYCLED for c in contacts.values())


def contact_sentence(
    contact_id: str, result: Mapping[str, Any], audit: Mapping[str, Any], names: Names
) -> str:
    """What a run did to one contact, e.g. "recycled to lead, enrolled in Nurture - Pricing"."""
    outcome = result.get("outcome")
    why = str(result.get("why", ""))
    nurtures = [
        str(e.get("name") or e.get("nurture"))
        for e in audit.get("enrollments") or []
        if e.get("contact") == contact_id
    ]
    enrolled = f", enrolled in {', '.join(nurtures)}" if nurtures else ""
    if outcome == ContactOutcome.RECYCLED:
        stage = why.rsplit("->", 1)[1].strip() if "->" in why else "lead"
        return f"recycled to {stage}{enrolled}"
    if outcome == ContactOutcome.RESUMED:
        return f"finished an earlier handoff{enrolled or ': nothing left to do'}"
    if outcome == ContactOutcome.PLANNED:
        return "would be recycled (dry run)"
    if outcome == ContactOutcome.FAILED:
        failures = "; ".join(str(f) for f in result.get("failures") or []) or "no error recorded"
        return f"FAILED: {failures}"
    if outcome == ContactOutcome.SKIPPED:
        return "left alone: " + _skip_sentence(why, audit, names)
    if outcome == ContactOutcome.CAME_BACK:
        return f"back with sales ({why}): taken out of the nurture"
    return "still under way"


def _skip_code(why: str) -> str:
    return why.split(":", 1)[0].strip()


def _skip_sentence(why: str, audit: Mapping[str, Any], names: Names) -> str:
    code, _, detail = why.partition(":")
    detail = detail.strip()
    deal_id = _deal_id(detail)  # the engine's detail names a deal as "deal 1001 is ..."
    if code == SkipReason.OPEN_DEAL:
        return (
            f"still on the open deal {names.deal(deal_id)}"
            if deal_id
            else f"still on an open deal ({detail})"
        )
    if code == SkipReason.CUSTOMER:
        return f"a customer (won the deal {names.deal(deal_id)})" if deal_id else f"a customer ({detail})"
    if code == SkipReason.NOT_RECYCLED:
        return f"{audit.get('reason') or 'this reason'} is never nurtured"
    if code == SkipReason.ALREADY_RECYCLED:
        return "already handed off for this loss"
    if code == SkipReason.NO_EMAIL:
        return "no email address, and the nurture enrolls by email"
    if code == SkipReason.ARCHIVED:
        return "archived in HubSpot"
    if code == SkipReason.IN_NURTURE:
        return detail.split(" (second loss", 1)[0]
    return why or "no reason recorded"


def _deal_id(detail: str) -> str | None:
    words = detail.split()
    return words[1] if len(words) > 1 and words[0] == "deal" and words[1].isdigit() else None


def handoff_failed(audit: Mapping[str, Any]) -> bool:
    """The run left work undone that a person must look at."""
    outcome = str(audit.get("outcome", ""))
    failed_contact = any(
        c.get("outcome") == ContactOutcome.FAILED for c in (audit.get("contacts") or {}).values()
    )
    return failed_contact or (outcome in set(Outcome) and Outcome(outcome).incomplete)
