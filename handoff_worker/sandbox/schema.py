"""The portal's property definitions: built-in ones, seeded and created ones, and write validation."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Any

from handoff_worker.sandbox.errors import SandboxApiError, not_found, validation_error
from handoff_worker.sandbox.records import (
    CONTACT_MODIFIED_PROPERTY,
    OBJECT_TYPE_IDS,
    OBJECT_TYPES,
    READ_ONLY_PROPERTIES,
    SINGULAR,
    ms_from_value,
)

DEFAULT_LIFECYCLE_ORDER = (
    "subscriber",
    "lead",
    "marketingqualifiedlead",
    "salesqualifiedlead",
    "opportunity",
    "customer",
    "evangelist",
    "other",
)

LEAD_STATUSES = (
    "NEW",
    "OPEN",
    "IN_PROGRESS",
    "OPEN_DEAL",
    "UNQUALIFIED",
    "ATTEMPTED_TO_CONTACT",
    "CONNECTED",
    "BAD_TIMING",
)


def resolve_type(object_type: str) -> str:
    """ "deals" / "0-3" -> "deals"; anything else is HubSpot's 400."""
    resolved = OBJECT_TYPE_IDS.get(object_type, object_type)
    if resolved not in OBJECT_TYPES:
        raise SandboxApiError(400, "VALIDATION_ERROR", f"Unable to infer object type from: {object_type}")
    return resolved


class Schema:
    """Property definitions by object type, and the order lifecycle stages may only move forward in."""

    def __init__(self) -> None:
        self.lifecycle_order: tuple[str, ...] = DEFAULT_LIFECYCLE_ORDER
        self.properties = _builtin_properties(self.lifecycle_order)

    def set_lifecycle_order(self, stages: list[str]) -> None:
        self.lifecycle_order = tuple(stages)
        lifecycle = self.properties["contacts"]["lifecyclestage"]
        lifecycle["options"] = [_option(s, s, i) for i, s in enumerate(self.lifecycle_order)]

    def define(self, object_type: str, definition: dict[str, Any]) -> dict[str, Any]:
        object_type = resolve_type(object_type)
        options = [
            {
                "label": o.get("label", o["value"]),
                "value": o["value"],
                "displayOrder": o.get("displayOrder", i),
                "hidden": o.get("hidden", False),
            }
            for i, o in enumerate(definition.get("options", []))
        ]
        prop = {
            "name": definition["name"],
            "label": definition.get("label", definition["name"]),
            "type": definition.get("type", "enumeration" if options else "string"),
            "fieldType": definition.get("fieldType", "select" if options else "text"),
            "groupName": definition.get("groupName", f"{SINGULAR[object_type]}information"),
            "description": definition.get("description", ""),
            "options": options,
        }
        self.properties[object_type][prop["name"]] = prop
        return prop

    def get_api(self, object_type: str, name: str) -> dict[str, Any]:
        prop = self.properties[resolve_type(object_type)].get(name)
        if prop is None:
            raise not_found(f"Property {name} does not exist")
        return _property_to_api(prop)

    def create_api(self, object_type: str, definition: dict[str, Any]) -> dict[str, Any]:
        resolved = resolve_type(object_type)
        name = definition.get("name")
        if not name:
            raise validation_error("Property definition is missing `name`.")
        if name in self.properties[resolved]:
            raise SandboxApiError(409, "OBJECT_ALREADY_EXISTS", f"A property named '{name}' already exists.")
        return _property_to_api(self.define(resolved, definition))

    def validate(self, object_type: str, values: dict[str, Any]) -> None:
        """HubSpot's 400 for unknown, read-only or out-of-options values; silence when all is well."""
        schema = self.properties[object_type]
        missing = [name for name in values if name not in schema]
        if missing:
            raise SandboxApiError(
                400,
                "VALIDATION_ERROR",
                "Property values were not valid: "
                + ", ".join(f'Property "{n}" does not exist' for n in missing),
                errors=[
                    {"message": f'Property "{n}" does not exist', "code": "PROPERTY_DOESNT_EXIST"}
                    for n in missing
                ],
                subCategory="PROPERTY_DOESNT_EXIST",
            )
        for name, value in values.items():
            if name in READ_ONLY_PROPERTIES:
                raise validation_error(f'Property "{name}" is read-only.')
            if schema[name]["type"] == "date" and value not in ("", None):
                _check_date(name, value)
            options = {o["value"] for o in schema[name]["options"]}
            if options and value not in ("", None) and str(value) not in options:
                raise SandboxApiError(
                    400,
                    "VALIDATION_ERROR",
                    f"Property values were not valid: {value} was not one of the allowed options: "
                    f'{sorted(options)} for property "{name}"',
                    errors=[
                        {"message": f"{value} was not one of the allowed options", "code": "INVALID_OPTION"}
                    ],
                )

    def lifecycle_may_move(self, current: str | None, new: str) -> bool:
        """HubSpot's forward-only rule: an API write may not move a stage back unless it was cleared."""
        if new == "" or not current:
            return True
        rank = {stage: i for i, stage in enumerate(self.lifecycle_order)}
        return rank.get(new, -1) >= rank.get(current, -1)


ORIGINAL_SOURCES = (
    ("ORGANIC_SEARCH", "Organic Search"),
    ("PAID_SEARCH", "Paid Search"),
    ("EMAIL_MARKETING", "Email Marketing"),
    ("SOCIAL_MEDIA", "Organic Social"),
    ("REFERRALS", "Referrals"),
    ("OTHER_CAMPAIGNS", "Other Campaigns"),
    ("DIRECT_TRAFFIC", "Direct Traffic"),
    ("OFFLINE", "Offline Sources"),
    ("PAID_SOCIAL", "Paid Social"),
    ("AI_REFERRALS", "AI Referrals"),
)


def _check_date(name: str, value: Any) -> None:
    """HubSpot's date properties hold a day: YYYY-MM-DD, or epoch ms at midnight UTC, nothing else."""
    text = str(value).strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        try:
            date.fromisoformat(text)
            return
        except ValueError:
            pass
    ms = ms_from_value(text)
    if ms is None:
        raise SandboxApiError(
            400,
            "VALIDATION_ERROR",
            f'Property values were not valid: {text} is not a valid date for "{name}"',
            errors=[{"message": f"{text} is not a valid date", "code": "INVALID_DATE"}],
        )
    if ms % 86_400_000:
        at = datetime.fromtimestamp(ms / 1000, tz=UTC)
        clock = f"{at.hour}:{at.minute}:{at.second}.{at.microsecond // 1000}"
        raise SandboxApiError(
            400,
            "VALIDATION_ERROR",
            f'Property values were not valid: {text} is at {clock} UTC, not midnight! for "{name}"',
            errors=[{"message": f"{text} is not at midnight UTC", "code": "INVALID_DATE"}],
        )


def _prop(name: str, label: str, kind: str = "string", field_type: str = "text") -> dict[str, Any]:
    return {"name": name, "label": label, "type": kind, "fieldType": field_type, "options": []}


def _option(value: str, label: str, order: int) -> dict[str, Any]:
    return {"label": label, "value": value, "displayOrder": order, "hidden": False}


def _builtin_properties(lifecycle_order: tuple[str, ...]) -> dict[str, dict[str, dict[str, Any]]]:
    common = [
        _prop("hs_object_id", "Record ID", "number", "number"),
        _prop("createdate", "Create date", "datetime", "date"),
        _prop("hs_lastmodifieddate", "Last modified date", "datetime", "date"),
        _prop("hubspot_owner_id", "Owner", "enumeration", "select"),
    ]
    deals = [
        _prop("dealname", "Deal name"),
        _prop("dealstage", "Deal stage", "enumeration", "radio"),
        _prop("pipeline", "Pipeline", "enumeration", "select"),
        _prop("amount", "Amount", "number", "number"),
        _prop("closed_lost_reason", "Closed lost reason", "string", "textarea"),
        _prop("closedate", "Close date", "datetime", "date"),
    ]
    lifecycle = _prop("lifecyclestage", "Lifecycle stage", "enumeration", "radio")
    lifecycle["options"] = [_option(stage, stage, i) for i, stage in enumerate(lifecycle_order)]
    lead_status = _prop("hs_lead_status", "Lead status", "enumeration", "radio")
    lead_status["options"] = [
        _option(value, value.replace("_", " ").title(), i) for i, value in enumerate(LEAD_STATUSES)
    ]
    # HubSpot sets it from the contact's first visit or import; reports group people by it.
    original_source = _prop("hs_analytics_source", "Original Source", "enumeration", "select")
    original_source["options"] = [
        _option(value, label, i) for i, (value, label) in enumerate(ORIGINAL_SOURCES)
    ]
    contacts = [
        _prop(CONTACT_MODIFIED_PROPERTY, "Last modified date", "datetime", "date"),
        original_source,
        _prop("email", "Email"),
        _prop("firstname", "First name"),
        _prop("lastname", "Last name"),
        lifecycle,
        lead_status,
    ]
    tasks = [
        _prop("hs_task_subject", "Task title"),
        _prop("hs_task_body", "Task notes", "string", "html"),
        _prop("hs_timestamp", "Due date", "datetime", "date"),
        _prop("hs_task_priority", "Priority", "enumeration", "select"),
        _prop("hs_task_status", "Task status", "enumeration", "select"),
        _prop("hs_task_type", "Task type", "enumeration", "select"),
    ]
    return {
        object_type: {p["name"]: p for p in [*common, *own]}
        for object_type, own in (("deals", deals), ("contacts", contacts), ("tasks", tasks))
    }


def _property_to_api(prop: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": prop["name"],
        "label": prop["label"],
        "type": prop["type"],
        "fieldType": prop["fieldType"],
        "groupName": prop.get("groupName", "information"),
        "description": prop.get("description", ""),
        "options": prop["options"],
        "hidden": False,
        "formField": False,
        "calculated": False,
        "externalOptions": False,
        "hasUniqueValue": False,
        "displayOrder": -1,
    }
