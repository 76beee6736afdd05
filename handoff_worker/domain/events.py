"""HubSpot webhook payloads -> typed events -> the units of work they call for. Pure.

HubSpot posts a JSON array of event objects. Each becomes one frozen `WebhookEvent`; a type we do
not know becomes `EventKind.UNKNOWN` instead of an error, so HubSpot adding a subscription type
never turns into retried deliveries. Only wrong shapes (not an object, a field of the wrong type,
an id that is not a positive 64-bit number) are errors, and they name the index and the field.
They are per event: `parse_batch` keeps the good events of a batch and lists the refused ones,
because a retry of the whole batch would fail the same way and lose the good events with it.

Ids are made canonical here (ASCII digits, no leading zeros: `"0007"` and `7` are the same
record), so dedupe and coalescing see one spelling of each record.

`plan_work` decides which events can start or unblock a handoff and what to queue for them. It
applies no business rule: whether a deal is really lost is for the task to find out after
re-reading HubSpot.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

from handoff_worker.domain.models import ObjectType
from handoff_worker.errors import HandoffError

# Generic `object.*` events name the object type by id instead of by prefix.
_OBJECT_TYPE_IDS = {"0-1": ObjectType.CONTACT, "0-3": ObjectType.DEAL}
_PREFIXES = {"contact": ObjectType.CONTACT, "deal": ObjectType.DEAL}


class EventKind(StrEnum):
    PROPERTY_CHANGE = "propertyChange"
    CREATION = "creation"
    DELETION = "deletion"
    MERGE = "merge"
    RESTORE = "restore"
    ASSOCIATION_CHANGE = "associationChange"
    PRIVACY_DELETION = "privacyDeletion"
    UNKNOWN = "unknown"


# HubSpot's object ids, timestamps and counters are signed 64-bit numbers.
MAX_ID = 2**63 - 1
_MAX_DIGITS = len(str(MAX_ID))
# One merge names the records merged into the survivor: a handful in practice. Each becomes a unit
# of work, so a longer list is refused instead of fanning out without bound (merged-away records
# also send their own deletion, and the scheduled resync re-reads the survivor).
MAX_MERGED_IDS = 100


class EventParseError(HandoffError):
    """The payload, or one event of it, is not what HubSpot sends. `reason` is a short tag for
    metrics; the message names the index and field but never quotes the value (it may be personal)."""

    def __init__(
        self,
        message: str,
        *,
        index: int | None = None,
        field_name: str | None = None,
        reason: str = "bad_shape",
    ) -> None:
        self.index = index
        self.field_name = field_name
        self.reason = reason
        where = ""
        if index is not None:
            where = f"event [{index}]"
            if field_name is not None:
                where += f" field {field_name!r}"
            where += ": "
        super().__init__(where + message)


class WebhookEvent(NamedTuple):
    """One event, immutable. A named tuple rather than a frozen dataclass: a 100-event request
    builds a hundred of them, and a frozen dataclass's checked `__init__` was a third of parsing."""

    subscription_type: str
    kind: EventKind
    object_type: ObjectType | None  # None for types we do not know
    object_id: str | None
    event_id: str | None = None
    portal_id: str | None = None
    occurred_at: int | None = None
    attempt_number: int = 0
    property_name: str | None = None
    property_value: str | None = None
    change_source: str | None = None
    source_id: str | None = None
    primary_object_id: str | None = None
    merged_object_ids: tuple[str, ...] = ()
    new_object_id: str | None = None
    association_type: str | None = None
    from_object_id: str | None = None
    to_object_id: str | None = None
    association_removed: bool = False

    def dedupe_key(self) -> str:
        """A stable hash of what makes a delivery the same event. `eventId` alone is documented as
        not unique, and `attemptNumber` is left out on purpose: a retry is the same event."""
        # One f-string: a missing field and an empty one both hash as "" (as `str`-joining did).
        occurred = "" if self.occurred_at is None else self.occurred_at
        text = (
            f"{self.portal_id or ''}\x1f{self.subscription_type}\x1f{self.object_id or ''}\x1f"
            f"{self.property_name or ''}\x1f{self.property_value or ''}\x1f{occurred}\x1f"
            f"{self.event_id or ''}"
        )
        # JSON can carry a lone UTF-16 surrogate ("\ud83d", a text cut mid-emoji); it still hashes.
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()

    def is_own_write(self, app_id: str) -> bool:
        """Events caused by this app's own writes (HubSpot sends those back too)."""
        return bool(app_id) and self.change_source == "INTEGRATION" and self.source_id == app_id


# --- parsing -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedBatch:
    events: tuple[WebhookEvent, ...]
    refused: tuple[EventParseError, ...] = ()


def parse_batch(payload: object) -> ParsedBatch:
    """The decoded JSON body -> the events it holds and the ones refused, each refusal naming its
    index and field. Raises `EventParseError` only when the body is not an array at all."""
    if not isinstance(payload, list):
        raise EventParseError(f"the body must be a JSON array of events, got {_json_kind(payload)}")
    events: list[WebhookEvent] = []
    refused: list[EventParseError] = []
    for index, item in enumerate(payload):
        try:
            events.append(_parse_one(item, index))
        except EventParseError as exc:
            refused.append(exc)
    return ParsedBatch(tuple(events), tuple(refused))


def parse_events(payload: object) -> tuple[WebhookEvent, ...]:
    """Like `parse_batch`, but any refused event raises its `EventParseError`."""
    batch = parse_batch(payload)
    if batch.refused:
        raise batch.refused[0]
    return batch.events


# What a common event (a property change, creation, deletion...) holds when HubSpot sends it.
# Events made only of these fields, with the types HubSpot uses, take `_parse_common`; anything
# else takes the checked path below, which decides every refusal.
_COMMON_FIELDS = frozenset(
    {
        "eventId",
        "subscriptionId",
        "portalId",
        "appId",
        "occurredAt",
        "subscriptionType",
        "attemptNumber",
        "objectId",
        "propertyName",
        "propertyValue",
        "changeSource",
        "sourceId",
        "changeFlag",
    }
)
_COMMON_KINDS = frozenset(
    {EventKind.PROPERTY_CHANGE, EventKind.CREATION, EventKind.DELETION, EventKind.RESTORE}
)
# subscriptionType -> (object type, kind), for the prefixed types (`deal.propertyChange`).
_COMMON_TYPES: dict[str, tuple[ObjectType, EventKind]] = {
    f"{prefix}.{kind.value}": (object_type, kind)
    for prefix, object_type in _PREFIXES.items()
    for kind in _COMMON_KINDS
}


def _parse_common(item: dict[str, object]) -> WebhookEvent | None:
    """The event as `_parse_one` would read it, in one pass, when it has the common shape; None
    when it has not (then the checked path reads it). Each test mirrors one of `_Fields`'."""
    if not _COMMON_FIELDS.issuperset(item):
        return None
    get = item.get
    subscription_type = get("subscriptionType")
    if type(subscription_type) is not str:
        return None
    classified = _COMMON_TYPES.get(subscription_type)
    if classified is None:
        return None
    object_id = get("objectId")
    event_id = get("eventId")
    portal_id = get("portalId")
    occurred_at = get("occurredAt")
    attempt_number = get("attemptNumber")
    for ident in (object_id, event_id, portal_id):
        if ident is not None and not (type(ident) is int and 0 < ident <= MAX_ID):
            return None
    if object_id is None:
        return None
    for number in (occurred_at, attempt_number):
        if number is not None and not (type(number) is int and 0 <= number <= MAX_ID):
            return None
    property_name = get("propertyName")
    property_value = get("propertyValue")
    change_source = get("changeSource")
    source_id = get("sourceId")
    for text in (property_name, property_value, change_source, source_id):
        if text is not None and type(text) is not str:
            return None
    return WebhookEvent(
        subscription_type=subscription_type,
        kind=classified[1],
        object_type=classified[0],
        object_id=str(object_id),
        event_id=None if event_id is None else str(event_id),
        portal_id=None if portal_id is None else str(portal_id),
        occurred_at=occurred_at,  # type: ignore[arg-type]  # checked above: an int or None
        attempt_number=attempt_number or 0,  # type: ignore[arg-type]  # checked above
        property_name=property_name,  # type: ignore[arg-type]  # checked above: a str or None
        property_value=property_value,  # type: ignore[arg-type]  # checked above
        change_source=change_source,  # type: ignore[arg-type]  # checked above
        source_id=source_id,  # type: ignore[arg-type]  # checked above
    )


def _parse_one(item: object, index: int) -> WebhookEvent:
    if type(item) is dict:
        common = _parse_common(item)
        if common is not None:
            return common
    if not isinstance(item, dict):
        raise EventParseError(f"must be a JSON object, got {_json_kind(item)}", index=index)
    fields = _Fields(item, index)
    subscription_type = fields.text("subscriptionType") or fields.text("eventType")
    if not subscription_type:
        raise EventParseError(
            "missing: every event needs 'subscriptionType' (or 'eventType')",
            index=index,
            field_name="subscriptionType",
            reason="missing_field",
        )
    object_type, kind = _classify(subscription_type, fields.text("objectTypeId"))
    if kind is EventKind.UNKNOWN:
        # Acknowledged and counted, never failed: only the type is read.
        return WebhookEvent(subscription_type=subscription_type, kind=kind, object_type=None, object_id=None)
    object_id = fields.ident("objectId", required=kind is not EventKind.ASSOCIATION_CHANGE)
    return WebhookEvent(
        subscription_type=subscription_type,
        kind=kind,
        object_type=object_type,
        object_id=object_id,
        event_id=fields.ident("eventId"),
        portal_id=fields.ident("portalId"),
        occurred_at=fields.integer("occurredAt"),
        attempt_number=fields.integer("attemptNumber") or 0,
        property_name=fields.text("propertyName"),
        property_value=fields.scalar_text("propertyValue"),
        change_source=fields.text("changeSource"),
        source_id=fields.scalar_text("sourceId"),  # "userId:5", an app id, ... not always numeric
        primary_object_id=fields.ident("primaryObjectId"),
        merged_object_ids=fields.idents("mergedObjectIds"),
        new_object_id=fields.ident("newObjectId"),
        association_type=fields.text("associationType"),
        from_object_id=fields.ident("fromObjectId"),
        to_object_id=fields.ident("toObjectId"),
        association_removed=fields.flag("associationRemoved"),
    )


def _classify(subscription_type: str, object_type_id: str | None) -> tuple[ObjectType | None, EventKind]:
    prefix, _, action = subscription_type.partition(".")
    by_id = prefix == "object"
    object_type = _OBJECT_TYPE_IDS.get(object_type_id or "") if by_id else _PREFIXES.get(prefix)
    try:
        kind = EventKind(action)
    except ValueError:
        kind = EventKind.UNKNOWN
    if object_type is None or kind is EventKind.UNKNOWN:
        return None, EventKind.UNKNOWN
    if kind is EventKind.PRIVACY_DELETION and object_type is not ObjectType.CONTACT:
        return None, EventKind.UNKNOWN
    return object_type, kind


class _Fields:
    """Typed access to one event's fields; a wrong type raises naming index and field."""

    def __init__(self, item: Mapping[str, object], index: int) -> None:
        self._item = item
        self._index = index

    def _fail(self, name: str, expected: str, reason: str = "bad_shape") -> EventParseError:
        return self._wrong(name, self._item[name], expected, reason)

    def _wrong(self, name: str, value: object, expected: str, reason: str) -> EventParseError:
        got = _number_kind(value) if reason in {"bad_id", "bad_number"} else _json_kind(value)
        return EventParseError(
            f"must be {expected}, got {got}", index=self._index, field_name=name, reason=reason
        )

    def text(self, name: str) -> str | None:
        value = self._item.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self._fail(name, "a string")
        return value

    def scalar_text(self, name: str) -> str | None:
        """Property values arrive as strings, but numbers and booleans are tolerated."""
        value = self._item.get(name)
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return str(value)
        raise self._fail(name, "a string")

    def integer(self, name: str) -> int | None:
        """A count or a time in ms: a whole number from 0 to 2^63-1, or its ASCII digits."""
        value = self._item.get(name)
        if value is None:
            return None
        if type(value) is int and 0 <= value <= MAX_ID:  # what HubSpot sends: no further call
            return value
        number = _whole_number(value)
        if number is None:
            raise self._fail(name, "a whole number from 0 to 2^63-1", "bad_number")
        return number

    def ident(self, name: str, *, required: bool = False) -> str | None:
        value = self._item.get(name)
        if value is None:
            if required:
                raise EventParseError(
                    "missing: this event type needs it",
                    index=self._index,
                    field_name=name,
                    reason="missing_field",
                )
            return None
        return self._id_text(name, value)

    def idents(self, name: str) -> tuple[str, ...]:
        value = self._item.get(name)
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self._fail(name, "an array of ids")
        if len(value) > MAX_MERGED_IDS:
            raise EventParseError(
                f"lists {len(value)} ids, more than the {MAX_MERGED_IDS} one event may name",
                index=self._index,
                field_name=name,
                reason="too_many_ids",
            )
        return tuple(self._id_text(name, v) for v in value)

    def flag(self, name: str) -> bool:
        value = self._item.get(name)
        if value is None:
            return False
        if not isinstance(value, bool):
            raise self._fail(name, "true or false")
        return value

    def _id_text(self, name: str, value: object) -> str:
        if type(value) is int and 0 < value <= MAX_ID:  # what HubSpot sends: no further call
            return str(value)
        number = _whole_number(value)
        if not number:  # None, or 0: HubSpot ids start at 1
            raise self._wrong(name, value, "a numeric id from 1 to 2^63-1", "bad_id")
        return str(number)


def _whole_number(value: object) -> int | None:
    """`value` as an int in 0..MAX_ID when it is a JSON integer or a string of ASCII digits, else
    None. `str.isdigit` alone lets through "²" and "١٢٣", which `int()` then fails on or reads."""
    if type(value) is int:  # not bool, not float
        return value if 0 <= value <= MAX_ID else None
    if type(value) is str and value.isascii() and value.isdigit():
        digits = value.lstrip("0") or "0"
        if len(digits) <= _MAX_DIGITS:
            number = int(digits)
            return number if number <= MAX_ID else None
    return None


def _number_kind(value: object) -> str:
    """What is wrong with a would-be id or count, without quoting it."""
    if type(value) is int:
        return "a negative number" if value < 0 else "zero" if value == 0 else "a number over 2^63-1"
    if isinstance(value, float):
        return "a number with a fraction or an exponent"
    if isinstance(value, OversizedNumber):
        return "a number too long to read"
    if type(value) is str:
        if value.isascii() and value.isdigit():
            return "zero" if not value.strip("0") else "digits over 2^63-1"
        return "a string that is not ASCII digits"
    return _json_kind(value)


class OversizedNumber:
    """Stands in for a JSON integer too long to convert (see `handoff_worker.intake.webhook`)."""


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float | OversizedNumber):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


# --- which events call for work ------------------------------------------------------------------


class UnitKind(StrEnum):
    DEAL = "deal"  # re-run the handoff for one deal
    CONTACT = "contact"  # re-run the lead handoff for one contact
    FORGET = "forget"  # a record merged away or deleted: the ledger must follow


class WorkUnit(NamedTuple):
    kind: UnitKind
    object_id: str
    # FORGET only: which object type, what happened, and the surviving record of a merge.
    object_type: ObjectType | None = None
    event: str | None = None
    merged_into: str | None = None

    @property
    def coalesce_key(self) -> str:
        """Units with the same key are one piece of work."""
        if self.kind is UnitKind.FORGET:
            return f"forget:{self.object_type}:{self.object_id}:{self.event}"
        return f"{self.kind}:{self.object_id}"


class Disposition(StrEnum):
    WORK = "work"
    OWN_WRITE = "own_write"  # caused by our own write: dropped
    UNKNOWN_TYPE = "unknown_type"  # a type we do not know: acknowledged
    IRRELEVANT = "irrelevant"  # cannot start or unblock a handoff


@dataclass(frozen=True)
class WatchedProperties:
    """The property names whose changes may start a handoff (from the nurture rules)."""

    deal: frozenset[str]
    contact: frozenset[str]


class EventDecision(NamedTuple):
    event: WebhookEvent
    disposition: Disposition
    units: tuple[WorkUnit, ...] = ()


def decide(event: WebhookEvent, *, watched: WatchedProperties, app_id: str) -> EventDecision:
    """What one event calls for. Every event gets exactly one disposition."""
    if event.kind is EventKind.UNKNOWN:
        return EventDecision(event, Disposition.UNKNOWN_TYPE)
    if event.is_own_write(app_id):
        return EventDecision(event, Disposition.OWN_WRITE)
    units = tuple(_units_for(event, watched))
    return EventDecision(event, Disposition.WORK if units else Disposition.IRRELEVANT, units)


def decide_all(
    events: Sequence[WebhookEvent], *, watched: WatchedProperties, app_id: str
) -> tuple[EventDecision, ...]:
    return tuple(decide(e, watched=watched, app_id=app_id) for e in events)


def _units_for(event: WebhookEvent, watched: WatchedProperties) -> Iterable[WorkUnit]:
    object_type, object_id = event.object_type, event.object_id
    handoff_kind = UnitKind.DEAL if object_type is ObjectType.DEAL else UnitKind.CONTACT
    match event.kind:
        case EventKind.PROPERTY_CHANGE:
            names = watched.deal if object_type is ObjectType.DEAL else watched.contact
            if object_id and event.property_name in names:
                yield WorkUnit(handoff_kind, object_id)
        case EventKind.CREATION:
            # A deal can be created directly in a lost stage; a new contact cannot be a handoff
            # until its lead status changes, which arrives as its own propertyChange.
            if object_type is ObjectType.DEAL and object_id:
                yield WorkUnit(UnitKind.DEAL, object_id)
        case EventKind.RESTORE:
            if object_id:
                yield WorkUnit(handoff_kind, object_id)
        case EventKind.ASSOCIATION_CHANGE:
            deal_id = _associated_deal(event)
            if deal_id and not event.association_removed:
                yield WorkUnit(UnitKind.DEAL, deal_id)
        case EventKind.DELETION | EventKind.PRIVACY_DELETION:
            if object_id:
                yield _forget(event, object_id, merged_into=None)
        case EventKind.MERGE:
            yield from _merge_units(event, handoff_kind)


def _associated_deal(event: WebhookEvent) -> str | None:
    """The deal of a deal-contact association change (a contact added to an already-lost deal)."""
    match (event.association_type or "").upper():
        case "DEAL_TO_CONTACT":
            return event.from_object_id
        case "CONTACT_TO_DEAL":
            return event.to_object_id
    return None


def _merge_units(event: WebhookEvent, handoff_kind: UnitKind) -> Iterable[WorkUnit]:
    survivor = event.new_object_id or event.primary_object_id or event.object_id
    for merged_id in event.merged_object_ids:
        if merged_id != survivor:
            yield _forget(event, merged_id, merged_into=survivor)
    if survivor:
        # The surviving record may now carry the lost stage or the reason of a merged one.
        yield WorkUnit(handoff_kind, survivor)


def _forget(event: WebhookEvent, object_id: str, *, merged_into: str | None) -> WorkUnit:
    names = {
        EventKind.MERGE: "merge",
        EventKind.DELETION: "deletion",
        EventKind.PRIVACY_DELETION: "privacy_deletion",
    }
    return WorkUnit(
        UnitKind.FORGET,
        object_id,
        object_type=event.object_type,
        event=names[event.kind],
        merged_into=merged_into,
    )
