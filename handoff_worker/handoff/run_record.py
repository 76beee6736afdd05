"""What one handoff run did, contact by contact: the audit record the engine fills as it goes.

Stored as one JSON object per run (`audit.record_audit`); the closed-loop report, `failures`,
`replay` and the demo read those objects back, so the field names and the outcome values are a
stored format and never change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from handoff_worker.domain.models import RecordKind


class Outcome(StrEnum):
    """How one run ended."""

    STARTED = "started"  # still running, or the process died before it ended
    HANDED_OFF = "handed_off"  # every step done: the loss is complete
    PARTIAL_FAILURE = "partial_failure"  # some steps failed for good: kept in the dead letter
    ERROR = "error"  # HubSpot failed the run: the task retries it
    WAITING_FOR_REASON = "waiting_for_reason"
    DRY_RUN = "dry_run"
    NOT_FOUND = "not_found"
    UNKNOWN_STAGE = "unknown_stage"  # in a stage no pipeline lists: kept in the dead letter
    DEAL_OPEN = "deal_open"
    DEAL_WON = "deal_won"
    DEAL_CLOSED_OTHER = "deal_closed_other"  # closed-lost in HubSpot, excluded in the nurture YAML
    NOT_UNQUALIFIED = "not_unqualified"

    @property
    def incomplete(self) -> bool:
        """The handoff did not complete: a failure to report (the dead letter keeps it)."""
        return self in _INCOMPLETE


_INCOMPLETE = frozenset({Outcome.PARTIAL_FAILURE, Outcome.ERROR})


class ContactOutcome(StrEnum):
    """What a run did to one contact."""

    PENDING = "pending"  # steps under way
    PLANNED = "planned"  # dry run: would be handed off
    SKIPPED = "skipped"  # not eligible (why is in `why`)
    RECYCLED = "recycled"
    RESUMED = "resumed"  # an earlier run moved its stage; this one finished its nurtures
    CAME_BACK = "came_back"  # sales works it again: taken out of its nurture
    FAILED = "failed"


@dataclass
class ContactResult:
    outcome: ContactOutcome
    why: str = ""
    steps_done: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


@dataclass
class HandoffRun:
    """What one run did: the audit record."""

    kind: RecordKind
    object_id: str
    trigger: str
    dry_run: bool
    config_version: str
    outcome: Outcome = Outcome.STARTED
    loss_id: str = ""
    reason: str | None = None
    reason_value: str | None = None
    contacts: dict[str, ContactResult] = field(default_factory=dict)
    enrollments: list[dict[str, str]] = field(default_factory=list)
    left: list[dict[str, str]] = field(default_factory=list)  # nurtures contacts were taken out of
    owner_task: str | None = None
    errors: list[str] = field(default_factory=list)
    api_calls: int = 0
    duration_ms: int = 0
    at: str = ""

    def contact(self, contact_id: str) -> ContactResult:
        return self.contacts.setdefault(contact_id, ContactResult(ContactOutcome.PENDING))

    def fail(self, contact_id: str, message: str) -> None:
        result = self.contact(contact_id)
        result.outcome = ContactOutcome.FAILED
        result.failures.append(message)
        self.errors.append(f"contact {contact_id}: {message}")

    def as_dict(self) -> dict[str, Any]:
        record = {k: v for k, v in self.__dict__.items() if k != "contacts"}
        record["contacts"] = {cid: c.__dict__ for cid, c in self.contacts.items()}
        return record
