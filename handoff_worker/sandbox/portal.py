"""The sandbox portal: CRM objects, schema, associations, workflows and lists, all in memory.

Every public method takes the portal's lock, so the threaded server can serve many clients at
once. Methods that change data return the change events the webhook dispatcher should send.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from handoff_worker.sandbox.errors import HubSpotError, batch_error, not_found, validation_error

OBJECT_TYPES = ("deals", "contacts", "tasks")
OBJECT_TYPE_IDS = {"0-1": "contacts", "0-3": "deals", "0-27": "tasks"}
SINGULAR = {"deals": "deal", "contacts": "contact", "tasks": "task"}

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

# HubSpot-defined association type ids, by (from, to) object type.
ASSOCIATION_TYPE_IDS = {
    ("deals", "contacts"): 3,
    ("contacts", "deals"): 4,
    ("tasks", "deals"): 216,
    ("deals", "tasks"): 215,
    ("tasks", "contacts"): 204,
    ("contacts", "tasks"): 203,
}

# Properties HubSpot maintains itself: readable, never written by a client.
READ_ONLY_PROPERTIES = frozenset({"hs_object_id", "createdate", "hs_lastmodifieddate", "lastmodifieddate"})
# Contacts also carry their older name for the last-modified date; searches on contacts use it.
CONTACT_MODIFIED_PROPERTY = "lastmodifieddate"

DEFAULT_READ_PROPERTIES = {
    "deals": ("dealname", "amount", "closedate", "pipeline", "dealstage"),
    "contacts": ("firstname", "lastname", "email"),
    "tasks": ("hs_task_subject", "hs_task_status", "hs_timestamp"),
}

MAX_CHANGE_LOG = 100_000


def _prop(name: str, label: str, kind: str = "string", field_type: str = "text") -> dict[str, Any]:
    return {"name": name, "label": label, "type": kind, "fieldType": field_type, "options": []}


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
        _option(value, value.replace("_", " ").title(), i)
        for i, value in enumerate(
            (
                "NEW",
                "OPEN",
                "IN_PROGRESS",
                "OPEN_DEAL",
                "UNQUALIFIED",
                "ATTEMPTED_TO_CONTACT",
                "CONNECTED",
                "BAD_TIMING",
            )
        )
    ]
    contacts = [
        _prop(CONTACT_MODIFIED_PROPERTY, "Last modified date", "datetime", "date"),
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


def _option(value: str, label: str, order: int) -> dict[str, Any]:
    return {"label": label, "value": value, "displayOrder": order, "hidden": False}


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


@dataclass
class CrmObject:
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
    source: str  # "CRM_UI" (a rep) or "INTEGRATION" (an API write)
    property_name: str | None = None
    property_value: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Workflow:
    id: int
    name: str
    enabled: bool = True
    allow_reenrollment: bool = False
    object_type_id: str = "0-1"
    flow_id: str | None = None
    enrolled_contact_ids: list[str] = field(default_factory=list)


@dataclass
class StaticOrDynamicList:
    list_id: str
    name: str
    processing_type: str = "MANUAL"
    object_type_id: str = "0-1"
    member_ids: list[str] = field(default_factory=list)


class Portal:
    """One HubSpot account's data. Thread-safe: every public method holds `lock`."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._clear()

    # ----- set-up -------------------------------------------------------------------------------

    def _clear(self) -> None:
        self.lifecycle_order: tuple[str, ...] = DEFAULT_LIFECYCLE_ORDER
        self.properties = _builtin_properties(self.lifecycle_order)
        self.objects: dict[str, dict[str, CrmObject]] = {t: {} for t in OBJECT_TYPES}
        self.associations: dict[tuple[str, str], dict[str, set[str]]] = {}
        self.pipelines: list[dict[str, Any]] = []
        self.owners: list[dict[str, Any]] = []
        self.workflows: dict[int, Workflow] = {}
        self.lists: dict[str, StaticOrDynamicList] = {}
        self.enrollment_attempts: list[dict[str, Any]] = []
        self.changes: deque[dict[str, Any]] = deque(maxlen=MAX_CHANGE_LOG)
        self._ids = itertools.count(1001)
        self._last_ms = 0

    def reset(self) -> None:
        with self.lock:
            self._clear()

    def now_ms(self) -> int:
        """A write timestamp strictly greater than the previous one, so ordering is meaningful."""
        self._last_ms = max(int(time.time() * 1000), self._last_ms + 1)
        return self._last_ms

    def seed(self, seed: dict[str, Any]) -> dict[str, int]:
        """Add the seed's records to the portal (see docs/sandbox.md for the format)."""
        with self.lock:
            if "lifecycle_stages" in seed:
                self.lifecycle_order = tuple(seed["lifecycle_stages"])
                stages = self.properties["contacts"]["lifecyclestage"]
                stages["options"] = [_option(s, s, i) for i, s in enumerate(self.lifecycle_order)]
            for object_type, definitions in seed.get("properties", {}).items():
                for definition in definitions:
                    self._define_property(object_type, definition)
            self.pipelines.extend(seed.get("pipelines", []))
            self.owners.extend(seed.get("owners", []))
            for raw in seed.get("workflows", []):
                self._add_workflow(raw)
            for raw in seed.get("lists", []):
                self._add_list(raw)
            for object_type in OBJECT_TYPES:
                for raw in seed.get(object_type, []):
                    self._seed_object(object_type, raw)
            for pair in seed.get("associations", []):
                self._link("deals", str(pair["deal"]), "contacts", str(pair["contact"]))
            return {t: len(self.objects[t]) for t in OBJECT_TYPES}

    def _define_property(self, object_type: str, definition: dict[str, Any]) -> dict[str, Any]:
        object_type = self.resolve_type(object_type)
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

    def _add_workflow(self, raw: dict[str, Any]) -> None:
        workflow = Workflow(
            id=int(raw["id"]),
            name=raw.get("name", f"Workflow {raw['id']}"),
            enabled=bool(raw.get("enabled", True)),
            allow_reenrollment=bool(raw.get("allow_reenrollment", False)),
            object_type_id=raw.get("objectTypeId", "0-1"),
            flow_id=str(raw.get("flow_id", raw["id"])),
        )
        self.workflows[workflow.id] = workflow

    def _add_list(self, raw: dict[str, Any]) -> None:
        hs_list = StaticOrDynamicList(
            list_id=str(raw["id"]),
            name=raw.get("name", f"List {raw['id']}"),
            processing_type=raw.get("processingType", "MANUAL"),
            object_type_id=raw.get("objectTypeId", "0-1"),
            member_ids=[str(m) for m in raw.get("members", [])],
        )
        self.lists[hs_list.list_id] = hs_list

    def _seed_object(self, object_type: str, raw: dict[str, Any]) -> CrmObject:
        properties = {k: "" if v is None else str(v) for k, v in raw.get("properties", raw).items()}
        properties.pop("id", None)
        object_id = str(raw.get("id") or next(self._ids))
        # Seeds may pin timestamps (equal ones included) to set up ordering cases.
        pinned = properties.pop("hs_lastmodifieddate", None) or properties.pop(
            CONTACT_MODIFIED_PROPERTY, None
        )
        properties.pop(CONTACT_MODIFIED_PROPERTY, None)
        updated = ms_from_value(pinned) or self.now_ms()
        created = ms_from_value(properties.pop("createdate", None)) or updated
        properties.pop("hs_object_id", None)
        obj = CrmObject(object_type, object_id, properties, created, updated)
        self.objects[object_type][object_id] = obj
        return obj

    # ----- schema -------------------------------------------------------------------------------

    @staticmethod
    def resolve_type(object_type: str) -> str:
        resolved = OBJECT_TYPE_IDS.get(object_type, object_type)
        if resolved not in OBJECT_TYPES:
            raise HubSpotError(400, "VALIDATION_ERROR", f"Unable to infer object type from: {object_type}")
        return resolved

    def get_property(self, object_type: str, name: str) -> dict[str, Any]:
        with self.lock:
            prop = self.properties[self.resolve_type(object_type)].get(name)
            if prop is None:
                raise not_found(f"Property {name} does not exist")
            return _property_to_api(prop)

    def create_property(self, object_type: str, definition: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            resolved = self.resolve_type(object_type)
            name = definition.get("name")
            if not name:
                raise validation_error("Property definition is missing `name`.")
            if name in self.properties[resolved]:
                raise HubSpotError(409, "OBJECT_ALREADY_EXISTS", f"A property named '{name}' already exists.")
            return _property_to_api(self._define_property(resolved, definition))

    def _validate_properties(self, object_type: str, values: dict[str, Any]) -> None:
        schema = self.properties[object_type]
        missing = [name for name in values if name not in schema]
        if missing:
            raise HubSpotError(
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
            options = {o["value"] for o in schema[name]["options"]}
            if options and value not in ("", None) and str(value) not in options:
                raise HubSpotError(
                    400,
                    "VALIDATION_ERROR",
                    f"Property values were not valid: {value} was not one of the allowed options: "
                    f'{sorted(options)} for property "{name}"',
                    errors=[
                        {"message": f"{value} was not one of the allowed options", "code": "INVALID_OPTION"}
                    ],
                )

    # ----- objects ------------------------------------------------------------------------------

    def _get(self, object_type: str, object_id: str) -> CrmObject:
        obj = self.objects[object_type].get(str(object_id))
        if obj is None:
            raise not_found(f"Object not found.  objectId are usually numeric.  id: {object_id}")
        return obj

    def read(self, object_type: str, object_id: str, names: list[str] | None) -> dict[str, Any]:
        with self.lock:
            return self._get(self.resolve_type(object_type), object_id).to_api(names)

    def batch_read(self, object_type: str, ids: list[str], names: list[str] | None) -> tuple[list, list]:
        with self.lock:
            resolved = self.resolve_type(object_type)
            found = [self.objects[resolved][i].to_api(names) for i in ids if i in self.objects[resolved]]
            missing = [i for i in ids if i not in self.objects[resolved]]
            errors = []
            if missing:
                label = SINGULAR[resolved].upper()
                errors.append(
                    batch_error(
                        "OBJECT_NOT_FOUND",
                        f"Could not get some {label} objects, they may be deleted or not exist. "
                        "Check that ids are valid.",
                        missing,
                    )
                )
            return found, errors

    def create(
        self, object_type: str, values: dict[str, Any], source: str, associations: list | None = None
    ) -> tuple[dict[str, Any], list[Change]]:
        with self.lock:
            resolved = self.resolve_type(object_type)
            self._validate_properties(resolved, values)
            planned_links = [self._parse_association(resolved, a) for a in associations or []]
            now = self.now_ms()
            properties = {k: "" if v is None else str(v) for k, v in values.items()}
            obj = CrmObject(resolved, str(next(self._ids)), properties, now, now)
            self.objects[resolved][obj.id] = obj
            changes = [Change("creation", resolved, obj.id, now, source)]
            for to_type, to_id in planned_links:
                changes += self._link(resolved, obj.id, to_type, to_id, source)
            self._log_change(obj, "created", None, None, source)
            return obj.to_api(list(values) or None), changes

    def _parse_association(self, from_type: str, association: dict[str, Any]) -> tuple[str, str]:
        to_id = str(association.get("to", {}).get("id", ""))
        for spec in association.get("types", []):
            type_id = int(spec.get("associationTypeId", -1))
            for (source_type, to_type), known in ASSOCIATION_TYPE_IDS.items():
                if source_type == from_type and known == type_id:
                    if to_id not in self.objects[to_type]:
                        raise validation_error(f"Association target {to_type} {to_id} does not exist.")
                    return to_type, to_id
        raise validation_error(
            f"Unsupported association types {association.get('types')} from {from_type}; "
            f"known ids: {ASSOCIATION_TYPE_IDS}"
        )

    def update(
        self, object_type: str, object_id: str, values: dict[str, Any], source: str
    ) -> tuple[dict[str, Any], list[Change]]:
        with self.lock:
            resolved = self.resolve_type(object_type)
            obj = self._get(resolved, object_id)
            self._validate_properties(resolved, values)
            changes = self._apply(obj, values, source, respect_lifecycle_rule=source == "INTEGRATION")
            return obj.to_api(list(values) or None), changes

    def batch_update(
        self, object_type: str, inputs: list[dict[str, Any]], source: str
    ) -> tuple[list, list, list[Change]]:
        with self.lock:
            resolved = self.resolve_type(object_type)
            ids = [str(i.get("id")) for i in inputs]
            duplicates = sorted({i for i in ids if ids.count(i) > 1})
            if duplicates:
                raise validation_error(
                    f"Duplicate IDs found in batch input: {duplicates}. IDs must be unique"
                )
            for item in inputs:
                self._validate_properties(resolved, item.get("properties", {}))
            results, missing, changes = [], [], []
            for item in inputs:
                obj = self.objects[resolved].get(str(item.get("id")))
                if obj is None:
                    missing.append(str(item.get("id")))
                    continue
                values = item.get("properties", {})
                changes += self._apply(obj, values, source, respect_lifecycle_rule=True)
                results.append(obj.to_api(list(values) or None))
            errors = []
            if missing:
                errors.append(
                    batch_error("OBJECT_NOT_FOUND", f"Object not found. objectIds: {missing}", missing)
                )
            return results, errors, changes

    def _apply(
        self, obj: CrmObject, values: dict[str, Any], source: str, respect_lifecycle_rule: bool
    ) -> list[Change]:
        changed: dict[str, str] = {}
        for name, raw in values.items():
            new = "" if raw is None else str(raw)
            old = obj.properties.get(name)
            if name == "lifecyclestage" and respect_lifecycle_rule and not self._lifecycle_may_move(old, new):
                continue  # HubSpot answers success and keeps the later stage.
            if old != new:
                changed[name] = new
        if not changed:
            return []
        now = self.now_ms()
        changes = []
        for name, new in changed.items():
            self._log_change(obj, name, obj.properties.get(name), new, source)
            obj.properties[name] = new
            changes.append(Change("propertyChange", obj.object_type, obj.id, now, source, name, new))
        obj.updated_ms = now
        return changes

    def _lifecycle_may_move(self, current: str | None, new: str) -> bool:
        if new == "" or not current:
            return True
        rank = {stage: i for i, stage in enumerate(self.lifecycle_order)}
        return rank.get(new, -1) >= rank.get(current, -1)

    def delete(self, object_type: str, object_id: str, source: str) -> list[Change]:
        with self.lock:
            resolved = self.resolve_type(object_type)
            obj = self._get(resolved, object_id)
            changes = []
            for to_type, to_ids in list(self.associations.get((resolved, obj.id), {}).items()):
                for to_id in list(to_ids):
                    changes += self._unlink(resolved, obj.id, to_type, to_id, source)
            del self.objects[resolved][obj.id]
            self._log_change(obj, "deleted", None, None, source)
            return [*changes, Change("deletion", resolved, obj.id, self.now_ms(), source)]

    def merge(self, object_type: str, primary_id: str, merged_id: str, source: str) -> list[Change]:
        """Merge `merged_id` into `primary_id`: blanks filled, associations moved, merged record gone."""
        with self.lock:
            resolved = self.resolve_type(object_type)
            primary, merged = self._get(resolved, primary_id), self._get(resolved, merged_id)
            for name, value in merged.properties.items():
                if not primary.properties.get(name):
                    primary.properties[name] = value
            for to_type, to_ids in list(self.associations.get((resolved, merged.id), {}).items()):
                for to_id in list(to_ids):
                    self._unlink(resolved, merged.id, to_type, to_id, source)
                    self._link(resolved, primary.id, to_type, to_id, source)
            del self.objects[resolved][merged.id]
            now = self.now_ms()
            primary.updated_ms = now
            self._log_change(primary, "merged", merged.id, primary.id, source)
            extra = {
                "primaryObjectId": int(primary.id),
                "mergedObjectIds": [int(merged.id)],
                "newObjectId": int(primary.id),
            }
            return [Change("merge", resolved, primary.id, now, source, extra=extra)]

    def _log_change(self, obj: CrmObject, what: str, old: str | None, new: str | None, source: str) -> None:
        self.changes.append(
            {
                "at": self._last_ms or self.now_ms(),
                "objectType": obj.object_type,
                "objectId": obj.id,
                "property": what,
                "old": old,
                "new": new,
                "source": source,
            }
        )

    # ----- associations -------------------------------------------------------------------------

    def associate(self, from_type: str, from_id: str, to_type: str, to_id: str, source: str) -> list[Change]:
        with self.lock:
            from_type, to_type = self.resolve_type(from_type), self.resolve_type(to_type)
            self._get(from_type, from_id)
            self._get(to_type, to_id)
            return self._link(from_type, str(from_id), to_type, str(to_id), source)

    def dissociate(self, from_type: str, from_id: str, to_type: str, to_id: str, source: str) -> list[Change]:
        with self.lock:
            from_type, to_type = self.resolve_type(from_type), self.resolve_type(to_type)
            return self._unlink(from_type, str(from_id), to_type, str(to_id), source)

    def _link(self, a_type: str, a_id: str, b_type: str, b_id: str, source: str = "CRM_UI") -> list[Change]:
        targets = self.associations.setdefault((a_type, a_id), {}).setdefault(b_type, set())
        if b_id in targets:
            return []
        targets.add(b_id)
        self.associations.setdefault((b_type, b_id), {}).setdefault(a_type, set()).add(a_id)
        return self._association_change(a_type, a_id, b_type, b_id, source, removed=False)

    def _unlink(self, a_type: str, a_id: str, b_type: str, b_id: str, source: str) -> list[Change]:
        targets = self.associations.get((a_type, a_id), {}).get(b_type, set())
        if b_id not in targets:
            return []
        targets.discard(b_id)
        self.associations.get((b_type, b_id), {}).get(a_type, set()).discard(a_id)
        return self._association_change(a_type, a_id, b_type, b_id, source, removed=True)

    def _association_change(
        self, a_type: str, a_id: str, b_type: str, b_id: str, source: str, removed: bool
    ) -> list[Change]:
        if {a_type, b_type} != {"deals", "contacts"}:
            return []
        deal_id, contact_id = (a_id, b_id) if a_type == "deals" else (b_id, a_id)
        extra = {
            "associationType": "DEAL_TO_CONTACT",
            "fromObjectId": int(deal_id),
            "toObjectId": int(contact_id),
            "associationRemoved": removed,
            "isPrimaryAssociation": False,
        }
        return [Change("associationChange", "deals", deal_id, self.now_ms(), source, extra=extra)]

    def associated_ids(self, from_type: str, from_id: str, to_type: str) -> list[str]:
        with self.lock:
            from_type, to_type = self.resolve_type(from_type), self.resolve_type(to_type)
            linked = self.associations.get((from_type, str(from_id)), {}).get(to_type, set())
            return sorted(linked, key=_numeric_key)

    def association_types(self, from_type: str, to_type: str) -> list[dict[str, Any]]:
        type_id = ASSOCIATION_TYPE_IDS.get((self.resolve_type(from_type), self.resolve_type(to_type)))
        if type_id is None:
            return []
        return [{"category": "HUBSPOT_DEFINED", "typeId": type_id, "label": None}]

    def exists(self, object_type: str, object_id: str) -> bool:
        with self.lock:
            return str(object_id) in self.objects[self.resolve_type(object_type)]

    # ----- workflows and lists ------------------------------------------------------------------

    def enroll(self, workflow_id: int, email: str) -> None:
        """Legacy enrollment: raises what HubSpot would answer; returns quietly on 204."""
        with self.lock:
            workflow = self.workflows.get(workflow_id)
            attempt: dict[str, Any] = {"workflowId": workflow_id, "email": email, "at": self.now_ms()}
            self.enrollment_attempts.append(attempt)
            if workflow is None:
                attempt["outcome"] = "unknown_workflow"
                raise not_found(f"Workflow {workflow_id} not found.")
            if workflow.object_type_id != "0-1":
                attempt["outcome"] = "not_contact_based"
                raise validation_error(
                    f"Workflow {workflow_id} is not contact-based; only contacts can be enrolled here."
                )
            if not workflow.enabled:
                attempt["outcome"] = "workflow_disabled"
                raise validation_error(
                    f"Workflow {workflow_id} is not enabled; turn it on to enroll contacts."
                )
            contact = self._contact_by_email(email)
            if contact is None:
                attempt["outcome"] = "unknown_contact"
                raise not_found(f"No contact with email {email}.")
            attempt["contactId"] = contact.id
            if contact.id in workflow.enrolled_contact_ids and not workflow.allow_reenrollment:
                attempt["outcome"] = "already_enrolled"
                return
            workflow.enrolled_contact_ids.append(contact.id)
            attempt["outcome"] = "enrolled"

    def _contact_by_email(self, email: str) -> CrmObject | None:
        wanted = email.strip().lower()
        for contact in self.objects["contacts"].values():
            if contact.properties.get("email", "").lower() == wanted:
                return contact
        return None

    def get_list(self, list_id: str) -> dict[str, Any]:
        with self.lock:
            hs_list = self.lists.get(str(list_id))
            if hs_list is None:
                raise not_found(f"List {list_id} does not exist.")
            return _list_to_api(hs_list)

    def add_to_list(self, list_id: str, record_ids: list[str]) -> dict[str, Any]:
        with self.lock:
            hs_list = self.lists.get(str(list_id))
            if hs_list is None:
                raise not_found(f"List {list_id} does not exist.")
            if hs_list.processing_type != "MANUAL":
                raise validation_error(
                    f"List {list_id} is {hs_list.processing_type}; only MANUAL lists accept memberships."
                )
            record_type = OBJECT_TYPE_IDS.get(hs_list.object_type_id, "contacts")
            added, missing = [], []
            for record_id in map(str, record_ids):
                if record_id not in self.objects[record_type]:
                    missing.append(record_id)
                elif record_id not in hs_list.member_ids:
                    hs_list.member_ids.append(record_id)
                    added.append(record_id)
            return {
                "recordIdsAdded": added,
                "recordsIdsAdded": added,
                "recordIdsRemoved": [],
                "recordIdsMissing": missing,
            }

    def flows(self) -> list[dict[str, Any]]:
        with self.lock:
            return [
                {
                    "id": w.flow_id,
                    "isEnabled": w.enabled,
                    "objectTypeId": w.object_type_id,
                    "name": w.name,
                    "revisionId": "1",
                    "flowType": "WORKFLOW",
                }
                for w in sorted(self.workflows.values(), key=lambda w: w.id)
            ]

    def workflow_id_mappings(self, inputs: list[dict[str, Any]]) -> tuple[list, list]:
        with self.lock:
            results, missing = [], []
            for item in inputs:
                if item.get("type") == "WORKFLOW_ID":
                    match = self.workflows.get(int(item.get("workflowId", -1)))
                    wanted = str(item.get("workflowId"))
                else:
                    wanted = str(item.get("flowId"))
                    match = next((w for w in self.workflows.values() if w.flow_id == wanted), None)
                if match is None:
                    missing.append(wanted)
                else:
                    results.append({"flowId": int(match.flow_id or match.id), "workflowId": match.id})
            errors = (
                [batch_error("OBJECT_NOT_FOUND", "No workflow for these ids.", missing)] if missing else []
            )
            return results, errors

    # ----- control-API views --------------------------------------------------------------------

    def snapshot(self, object_type: str, ids: list[str] | None = None) -> list[dict[str, Any]]:
        with self.lock:
            resolved = self.resolve_type(object_type)
            chosen = ids if ids is not None else sorted(self.objects[resolved], key=_numeric_key)
            return [self.objects[resolved][i].snapshot() for i in chosen if i in self.objects[resolved]]

    def enrollments(self) -> dict[str, Any]:
        with self.lock:
            return {
                str(w.id): {
                    "name": w.name,
                    "enabled": w.enabled,
                    "contactIds": list(w.enrolled_contact_ids),
                    "count": len(w.enrolled_contact_ids),
                    "attempts": [a for a in self.enrollment_attempts if a["workflowId"] == w.id],
                }
                for w in self.workflows.values()
            } | {"attempts": list(self.enrollment_attempts)}

    def list_memberships(self) -> dict[str, Any]:
        with self.lock:
            return {
                list_id: {
                    "name": hs_list.name,
                    "processingType": hs_list.processing_type,
                    "memberIds": list(hs_list.member_ids),
                }
                for list_id, hs_list in self.lists.items()
            }


def _numeric_key(object_id: str) -> tuple[int, str]:
    return (int(object_id), "") if object_id.isdigit() else (0, object_id)


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


def _list_to_api(hs_list: StaticOrDynamicList) -> dict[str, Any]:
    return {
        "list": {
            "listId": hs_list.list_id,
            "name": hs_list.name,
            "processingType": hs_list.processing_type,
            "objectTypeId": hs_list.object_type_id,
            "processingStatus": "COMPLETE",
            "listVersion": 1,
            "size": len(hs_list.member_ids),
        }
    }
