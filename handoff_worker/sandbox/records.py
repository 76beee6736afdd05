"""What the sandbox portal stores per CRM record, the changes it reports, and HubSpot's time formats."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

OBJECT_TYPES = ("deals", "contacts", "tasks")
OBJECT_TYPE_IDS = {"0-1": "contacts", "0-3": "deals", "0-27": "tasks"}
SINGULAR = {"deals": "deal", "contacts": "contact", "tasks": "task"}

# Properties HubSpot maintains itself: readable, never written by a client.
READ_ONLY_PROPERTIES = frozenset({"hs_object_id", "createdate", "hs_lastmodifieddate", "lastmodifieddate"})
# Contacts also carry their older name for the last-modified date; searches on contacts use it.
CONTACT_MODIFIED_PROPERTY = "lastmodifieddate"

DEFAULT_READ_PROPERTIES = {
    "deals": ("dealname", "amount", "closedate", "pipeline", "dealstage"),
    "contacts": ("firstname", "lastname", "email"),
    "tasks": ("hs_task_subject", "hs_task_status", "hs_timestamp"),
}

# The change source HubSpot reports for writes made through the API (a rep's are "CRM_UI").
INTEGRATION = "INTEGRATION"


def iso_from_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def ms_from_value(value: Any) -> int | None:
    """Milliseconds from an epoch-ms number/string or an ISO-8601 string; None when neither."""
    if value is None or value == "":
        return None
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def numeric_key(object_id: str) -> tuple[int, str]:
    """Sort key putting numeric ids in number order, as HubSpot lists them."""
    return (int(object_id), "") if object_id.isdigit() else (0, object_id)


@dataclass
class StoredRecord:
    """One deal, contact or task as the sandbox keeps it (named apart from our domain's `CrmObject`)."""

    object_type: str
    id: str
    properties: dict[str, str]
    created_ms: int
    updated_ms: int
    archived: bool = False

    def value(self, name: str) -> str | None:
        if name == "hs_object_id":
            return self.id
        if name == "createdate":
            return iso_from_ms(self.created_ms)
        if name == "hs_lastmodifieddate" or (
            name == CONTACT_MODIFIED_PROPERTY and self.object_type == "contacts"
        ):
            return iso_from_ms(self.updated_ms)
        return self.properties.get(name)

    def to_api(self, names: list[str] | None = None) -> dict[str, Any]:
        wanted = list(names) if names else list(DEFAULT_READ_PROPERTIES[self.object_type])
        wanted += [n for n in ("hs_object_id", "createdate", "hs_lastmodifieddate") if n not in wanted]
        return {
            "id": self.id,
            "properties": {name: self.value(name) for name in wanted},
            "createdAt": iso_from_ms(self.created_ms),
            "updatedAt": iso_from_ms(self.updated_ms),
            "archived": self.archived,
        }

    def snapshot(self) -> dict[str, Any]:
        """Every property, for the control API."""
        properties: dict[str, str | None] = dict(self.properties)
        for name in READ_ONLY_PROPERTIES:
            properties[name] = self.value(name)
        return {"id": self.id, "objectType": self.object_type, "properties": properties}


@dataclass(frozen=True)
class Change:
    """One thing that happened to the CRM, from which webhook events are made."""

    kind: str  # creation | deletion | propertyChange | associationChange | merge
    object_type: str
    object_id: str
    occurred_ms: int
    source: str  # "CRM_UI" (a rep) or INTEGRATION (an API write)
    property_name: str | None = None
    property_value: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
