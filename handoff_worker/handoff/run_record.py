"""What one handoff run did, contact by contact: the audit record the engine fills as it goes.

Stored as one JSON object per run (`audit.record_audit`); the closed-loop report, `failures`,
`replay` and the demo read those objects back, so the field names are a stored format.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ContactReport:
    outcome: str  # recycled, resumed, skipped, failed, planned (dry run)
    why: str = ""
    steps_done: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


@dataclass
class HandoffReport:
    """What one run did: the audit record."""

    kind: str
    object_id: str
    trigger: str
    dry_run: bool
    config_version: str
    outcome: str = "started"
    loss_id: str = ""
    reason: str | None = None
    reason_value: str | None = None
    contacts: dict[str, ContactReport] = field(default_factory=dict)
    enrollments: list[dict[str, str]] = field(default_factory=list)
    owner_task: str | None = None
    errors: list[str] = field(default_factory=list)
    api_calls: int = 0
    duration_ms: int = 0
    at: str = ""

    def contact(self, contact_id: str) -> ContactReport:
        return self.contacts.setdefault(contact_id, ContactReport("pending"))

    def fail(self, contact_id: str, message: str) -> None:
        report = self.contact(contact_id)
        report.outcome = "failed"
        report.failures.append(message)
        self.errors.append(f"contact {contact_id}: {message}")

    def as_dict(self) -> dict[str, Any]:
        record = {k: v for k, v in self.__dict__.items() if k != "contacts"}
        record["contacts"] = {cid: c.__dict__ for cid, c in self.contacts.items()}
        return record
