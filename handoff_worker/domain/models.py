"""Plain data the gateway returns and the handoff engine reads. Ids are strings everywhere."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class ObjectType(StrEnum):
    CONTACT = "contacts"
    DEAL = "deals"

    @property
    def type_id(self) -> str:
        return {"contacts": "0-1", "deals": "0-3"}[self.value]


class WorkClass(StrEnum):
    """Who is waiting for a handoff: a webhook just told us (live), or a sweep or backfill found it
    (bulk). Live work goes first in the queues and in the API budget."""

    LIVE = "live"
    BULK = "bulk"


class RecordKind(StrEnum):
    """What one handoff is about: a lost deal, or a contact disqualified as a lead.

    The values are part of Redis keys and stored records (ledger, pending marks, locks, dead
    letters, audit), so they never change.
    """

    DEAL = "deal"
    CONTACT = "contact"

    @property
    def object_type(self) -> ObjectType:
        return _OBJECT_TYPES[self]

    @classmethod
    def named(cls, name: str) -> RecordKind:
        """A kind from its name, singular or as HubSpot's object type (`deals`, `contacts`)."""
        try:
            return _KINDS_BY_NAME[name]
        except KeyError:
            raise ValueError(
                f"{name!r} is not a kind of record the handoff knows; expected one of "
                f"{', '.join(sorted(_KINDS_BY_NAME))}"
            ) from None


_OBJECT_TYPES = {RecordKind.DEAL: ObjectType.DEAL, RecordKind.CONTACT: ObjectType.CONTACT}
_KINDS_BY_NAME = {
    **{kind.value: kind for kind in RecordKind},
    **{object_type.value: kind for kind, object_type in _OBJECT_TYPES.items()},
}


@dataclass(frozen=True)
class CrmObject:
    """A deal or contact: its id and the properties that were asked for (missing ones are None)."""

    id: str
    properties: dict[str, str | None] = field(default_factory=dict)
    updated_at: datetime | None = None
    archived: bool = False

    def get(self, name: str) -> str | None:
        return self.properties.get(name)


@dataclass(frozen=True)
class Stage:
    id: str
    label: str
    is_closed: bool
    probability: float | None
    display_order: int = 0

    @property
    def is_closed_lost(self) -> bool:
        """HubSpot's own test: closed with probability 0. Labels are never trusted."""
        return self.is_closed and self.probability == 0.0


@dataclass(frozen=True)
class Pipeline:
    id: str
    label: str
    stages: tuple[Stage, ...]


@dataclass(frozen=True)
class RecordError:
    """One record of a batch call that failed (HubSpot's 207 `errors`)."""

    ids: tuple[str, ...]
    status: str
    category: str
    message: str


@dataclass(frozen=True)
class BatchUpdateResult:
    updated: tuple[CrmObject, ...]
    errors: tuple[RecordError, ...] = ()


@dataclass(frozen=True)
class SearchFilter:
    property_name: str
    operator: str  # EQ NEQ LT LTE GT GTE BETWEEN IN NOT_IN HAS_PROPERTY NOT_HAS_PROPERTY
    value: str | None = None
    high_value: str | None = None  # BETWEEN
    values: tuple[str, ...] | None = None  # IN / NOT_IN


@dataclass(frozen=True)
class SearchPage:
    results: tuple[CrmObject, ...]
    total: int
    next_after: str | None


@dataclass(frozen=True)
class PropertyOption:
    label: str
    value: str
    hidden: bool = False


@dataclass(frozen=True)
class PropertyDefinition:
    object_type: str
    name: str
    label: str
    type: str
    field_type: str
    options: tuple[PropertyOption, ...] = ()
    # The property group it sits in (HubSpot's groupName); "" leaves the choice to the gateway.
    group_name: str = ""


@dataclass(frozen=True)
class Flow:
    """A workflow as the v4 flows API shows it."""

    id: str
    name: str
    is_enabled: bool
    object_type_id: str
    revision_id: str | None = None
    # Contacts may enroll again after leaving: HubSpot itself would then send a nurture twice.
    re_enrollment: bool = False


@dataclass(frozen=True)
class ListInfo:
    id: str
    name: str
    processing_type: str  # MANUAL (static), DYNAMIC (active), SNAPSHOT
    object_type_id: str

    @property
    def is_static(self) -> bool:
        return self.processing_type in {"MANUAL", "SNAPSHOT"}


@dataclass(frozen=True)
class ListMembershipResult:
    added: tuple[str, ...]
    missing: tuple[str, ...] = ()  # ids HubSpot did not know
    already_members: tuple[str, ...] = ()


@dataclass(frozen=True)
class NewTask:
    subject: str
    body: str
    owner_id: str | None
    due_at: datetime
    deal_id: str | None = None
    contact_id: str | None = None
    priority: str = "HIGH"
