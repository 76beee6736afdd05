"""Links between records, kept both ways, and the association changes HubSpot sends webhooks for."""

from __future__ import annotations

from collections.abc import Callable, Container, Mapping
from typing import Any

from handoff_worker.sandbox.errors import validation_error
from handoff_worker.sandbox.records import Change, numeric_key

# HubSpot-defined association type ids, by (from, to) object type.
ASSOCIATION_TYPE_IDS = {
    ("deals", "contacts"): 3,
    ("contacts", "deals"): 4,
    ("tasks", "deals"): 216,
    ("deals", "tasks"): 215,
    ("tasks", "contacts"): 204,
    ("contacts", "tasks"): 203,
}


class AssociationStore:
    """Which records are linked to which. Not locked itself: the portal holds its lock around it."""

    def __init__(self, clock_ms: Callable[[], int]) -> None:
        self._clock_ms = clock_ms
        self._links: dict[tuple[str, str], dict[str, set[str]]] = {}

    def link(self, a_type: str, a_id: str, b_type: str, b_id: str, source: str) -> list[Change]:
        targets = self._links.setdefault((a_type, a_id), {}).setdefault(b_type, set())
        if b_id in targets:
            return []
        targets.add(b_id)
        self._links.setdefault((b_type, b_id), {}).setdefault(a_type, set()).add(a_id)
        return self._change(a_type, a_id, b_type, b_id, source, removed=False)

    def unlink(self, a_type: str, a_id: str, b_type: str, b_id: str, source: str) -> list[Change]:
        targets = self._links.get((a_type, a_id), {}).get(b_type, set())
        if b_id not in targets:
            return []
        targets.discard(b_id)
        self._links.get((b_type, b_id), {}).get(a_type, set()).discard(a_id)
        return self._change(a_type, a_id, b_type, b_id, source, removed=True)

    def linked(self, object_type: str, object_id: str) -> list[tuple[str, str]]:
        """Every (type, id) linked to the record, for moving or dropping its links."""
        by_type = self._links.get((object_type, object_id), {})
        return [(to_type, to_id) for to_type, to_ids in by_type.items() for to_id in list(to_ids)]

    def ids(self, from_type: str, from_id: str, to_type: str) -> list[str]:
        return sorted(self._links.get((from_type, from_id), {}).get(to_type, set()), key=numeric_key)

    def _change(
        self, a_type: str, a_id: str, b_type: str, b_id: str, source: str, removed: bool
    ) -> list[Change]:
        if {a_type, b_type} != {"deals", "contacts"}:
            return []  # HubSpot's webhooks only tell of deal-contact links
        deal_id, contact_id = (a_id, b_id) if a_type == "deals" else (b_id, a_id)
        extra = {
            "associationType": "DEAL_TO_CONTACT",
            "fromObjectId": int(deal_id),
            "toObjectId": int(contact_id),
            "associationRemoved": removed,
            "isPrimaryAssociation": False,
        }
        return [Change("associationChange", "deals", deal_id, self._clock_ms(), source, extra=extra)]


def association_types(from_type: str, to_type: str) -> list[dict[str, Any]]:
    type_id = ASSOCIATION_TYPE_IDS.get((from_type, to_type))
    if type_id is None:
        return []
    return [{"category": "HUBSPOT_DEFINED", "typeId": type_id, "label": None}]


def parse_association(
    from_type: str, association: dict[str, Any], existing: Mapping[str, Container[str]]
) -> tuple[str, str]:
    """(to type, to id) of one `associations` entry of a create request; 400 when HubSpot would."""
    shape = (
        '{"to": {"id": "3001"}, "types": [{"associationCategory": "HUBSPOT_DEFINED", '
        '"associationTypeId": 3}]}'
    )
    target = association.get("to") if isinstance(association, dict) else None
    types = association.get("types") if isinstance(association, dict) else None
    if (
        not isinstance(target, dict)
        or not isinstance(types, list)
        or not all(isinstance(t, dict) for t in types)
    ):
        raise validation_error(f"Each entry of associations must look like {shape}, got {association!r}.")
    to_id = str(target.get("id", ""))
    for spec in types:
        try:
            type_id = int(spec.get("associationTypeId", -1))
        except (TypeError, ValueError):
            raise validation_error(f"associationTypeId must be a number, got {spec!r}.") from None
        for (source_type, to_type), known in ASSOCIATION_TYPE_IDS.items():
            if source_type == from_type and known == type_id:
                if to_id not in existing[to_type]:
                    raise validation_error(f"Association target {to_type} {to_id} does not exist.")
                return to_type, to_id
    raise validation_error(
        f"Unsupported association types {association.get('types')} from {from_type}; "
        f"known ids: {ASSOCIATION_TYPE_IDS}"
    )
