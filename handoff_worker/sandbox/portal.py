"""The sandbox portal: one HubSpot account's records and their history, in memory.

The portal keeps the records and the change log itself and holds its parts: the property schema
(schema.py), the links between records (associations.py), workflows and lists (automation.py).
Every public method takes the portal's lock, so the threaded server can serve many clients at
once. Methods that change data return the change events the webhook dispatcher should send.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from typing import Any, Protocol

from handoff_worker.sandbox.associations import AssociationStore, association_types, parse_association
from handoff_worker.sandbox.automation import Automation
from handoff_worker.sandbox.errors import batch_error, not_found, validation_error
from handoff_worker.sandbox.records import (
    CONTACT_MODIFIED_PROPERTY,
    INTEGRATION,
    OBJECT_TYPES,
    SINGULAR,
    Change,
    StoredRecord,
    ms_from_value,
    numeric_key,
)
from handoff_worker.sandbox.schema import Schema, resolve_type

MAX_CHANGE_LOG = 100_000


class WriteFaults(Protocol):
    """Decides whether an API write is answered as done but not made (see faults.py)."""

    def swallows_write(self, object_type: str, object_id: str, name: str, value: str) -> bool: ...


class Portal:
    """One HubSpot account's data. Thread-safe: every public method holds `lock`."""

    def __init__(self, write_faults: WriteFaults | None = None) -> None:
        self.lock = threading.RLock()
        self.write_faults = write_faults
        self._clear()

    # ----- set-up -------------------------------------------------------------------------------

    def _clear(self) -> None:
        self.schema = Schema()
        self.objects: dict[str, dict[str, StoredRecord]] = {t: {} for t in OBJECT_TYPES}
        self.links = AssociationStore(self.now_ms)
        self.automation = Automation()
        self.pipelines: list[dict[str, Any]] = []
        self.owners: list[dict[str, Any]] = []
        self.changes: deque[dict[str, Any]] = deque(maxlen=MAX_CHANGE_LOG)
        self._ids = itertools.count(1001)
        self._last_ms = 0

    @property
    def properties(self) -> dict[str, dict[str, dict[str, Any]]]:
        return self.schema.properties

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
                self.schema.set_lifecycle_order(seed["lifecycle_stages"])
            for object_type, definitions in seed.get("properties", {}).items():
                for definition in definitions:
                    self.schema.define(object_type, definition)
            self.pipelines.extend(seed.get("pipelines", []))
            self.owners.extend(seed.get("owners", []))
            for raw in seed.get("workflows", []):
                self.automation.add_workflow(raw)
            for raw in seed.get("lists", []):
                self.automation.add_list(raw)
            for object_type in OBJECT_TYPES:
                for raw in seed.get(object_type, []):
                    self._seed_object(object_type, raw)
            for pair in seed.get("associations", []):
                self.links.link("deals", str(pair["deal"]), "contacts", str(pair["contact"]), "CRM_UI")
            return {t: len(self.objects[t]) for t in OBJECT_TYPES}

    def _seed_object(self, object_type: str, raw: dict[str, Any]) -> StoredRecord:
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
        record = StoredRecord(object_type, object_id, properties, created, updated)
        self.objects[object_type][object_id] = record
        return record

    # ----- schema -------------------------------------------------------------------------------

    @staticmethod
    def resolve_type(object_type: str) -> str:
        return resolve_type(object_type)

    def get_property(self, object_type: str, name: str) -> dict[str, Any]:
        with self.lock:
            return self.schema.get_api(object_type, name)

    def create_property(self, object_type: str, definition: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            return self.schema.create_api(object_type, definition)

    # ----- records ------------------------------------------------------------------------------

    def _get(self, object_type: str, object_id: str) -> StoredRecord:
        record = self.objects[object_type].get(str(object_id))
        if record is None:
            raise not_found(f"Object not found.  objectId are usually numeric.  id: {object_id}")
        return record

    def exists(self, object_type: str, object_id: str) -> bool:
        with self.lock:
            return str(object_id) in self.objects[resolve_type(object_type)]

    def read(self, object_type: str, object_id: str, names: list[str] | None) -> dict[str, Any]:
        with self.lock:
            return self._get(resolve_type(object_type), object_id).to_api(names)

    def batch_read(
        self, object_type: str, ids: list[str], names: list[str] | None
    ) -> tuple[list[Any], list[Any]]:
        with self.lock:
            resolved = resolve_type(object_type)
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
        self, object_type: str, values: dict[str, Any], source: str, associations: list[Any] | None = None
    ) -> tuple[dict[str, Any], list[Change]]:
        with self.lock:
            resolved = resolve_type(object_type)
            self.schema.validate(resolved, values)
            if associations is not None and not isinstance(associations, list):
                raise validation_error(f"associations must be a list of associations, got {associations!r}.")
            planned_links = [parse_association(resolved, a, self.objects) for a in associations or []]
            now = self.now_ms()
            properties = {k: "" if v is None else str(v) for k, v in values.items()}
            record = StoredRecord(resolved, str(next(self._ids)), properties, now, now)
            self.objects[resolved][record.id] = record
            changes = [Change("creation", resolved, record.id, now, source)]
            for to_type, to_id in planned_links:
                changes += self.links.link(resolved, record.id, to_type, to_id, source)
            self._log_change(record, "created", None, None, source)
            return record.to_api(list(values) or None), changes

    def update(
        self, object_type: str, object_id: str, values: dict[str, Any], source: str
    ) -> tuple[dict[str, Any], list[Change]]:
        with self.lock:
            resolved = resolve_type(object_type)
            record = self._get(resolved, object_id)
            self.schema.validate(resolved, values)
            changes = self._apply(record, values, source)
            return record.to_api(list(values) or None), changes

    def batch_update(
        self, object_type: str, inputs: list[dict[str, Any]], source: str
    ) -> tuple[list[Any], list[Any], list[Change]]:
        with self.lock:
            resolved = resolve_type(object_type)
            ids = [str(i.get("id")) for i in inputs]
            duplicates = sorted({i for i in ids if ids.count(i) > 1})
            if duplicates:
                raise validation_error(
                    f"Duplicate IDs found in batch input: {duplicates}. IDs must be unique"
                )
            for item in inputs:
                self.schema.validate(resolved, item.get("properties", {}))
            results, missing, changes = [], [], []
            for item in inputs:
                record = self.objects[resolved].get(str(item.get("id")))
                if record is None:
                    missing.append(str(item.get("id")))
                    continue
                values = item.get("properties", {})
                changes += self._apply(record, values, source)
                results.append(record.to_api(list(values) or None))
            errors = []
            if missing:
                errors.append(
                    batch_error("OBJECT_NOT_FOUND", f"Object not found. objectIds: {missing}", missing)
                )
            return results, errors, changes

    def _apply(self, record: StoredRecord, values: dict[str, Any], source: str) -> list[Change]:
        by_api = source == INTEGRATION  # a rep in HubSpot's UI is bound by neither rule below
        changed: dict[str, str] = {}
        for name, raw in values.items():
            new = "" if raw is None else str(raw)
            old = record.properties.get(name)
            if old == new:
                continue
            if by_api and name == "lifecyclestage" and not self.schema.lifecycle_may_move(old, new):
                continue  # HubSpot answers success and keeps the later stage.
            if by_api and self._swallowed(record, name, new):
                continue  # an injected fault: answered as done, nothing written
            changed[name] = new
        if not changed:
            return []
        now = self.now_ms()
        changes = []
        for name, new in changed.items():
            self._log_change(record, name, record.properties.get(name), new, source)
            record.properties[name] = new
            changes.append(Change("propertyChange", record.object_type, record.id, now, source, name, new))
        record.updated_ms = now
        return changes

    def _swallowed(self, record: StoredRecord, name: str, value: str) -> bool:
        faults = self.write_faults
        return faults is not None and faults.swallows_write(record.object_type, record.id, name, value)

    def delete(self, object_type: str, object_id: str, source: str) -> list[Change]:
        with self.lock:
            resolved = resolve_type(object_type)
            record = self._get(resolved, object_id)
            changes = []
            for to_type, to_id in self.links.linked(resolved, record.id):
                changes += self.links.unlink(resolved, record.id, to_type, to_id, source)
            del self.objects[resolved][record.id]
            self._log_change(record, "deleted", None, None, source)
            return [*changes, Change("deletion", resolved, record.id, self.now_ms(), source)]

    def merge(self, object_type: str, primary_id: str, merged_id: str, source: str) -> list[Change]:
        """Merge `merged_id` into `primary_id`: blanks filled, associations moved, merged record gone."""
        with self.lock:
            resolved = resolve_type(object_type)
            primary, merged = self._get(resolved, primary_id), self._get(resolved, merged_id)
            for name, value in merged.properties.items():
                if not primary.properties.get(name):
                    primary.properties[name] = value
            for to_type, to_id in self.links.linked(resolved, merged.id):
                self.links.unlink(resolved, merged.id, to_type, to_id, source)
                self.links.link(resolved, primary.id, to_type, to_id, source)
            del self.objects[resolved][merged.id]
            now = self.now_ms()
            primary.updated_ms = now
            self._log_change(primary, "merged", merged.id, primary.id, source)
            extra = {
                "primaryObjectId": int(primary.id),
                "mergedObjectIds": [int(merged.id)],
                "newObjectId": int(primary.id),
            }
            # HubSpot also sends the merged-away record's deletion, in no set order with the merge.
            return [
                Change("merge", resolved, primary.id, now, source, extra=extra),
                Change("deletion", resolved, merged.id, now, source),
            ]

    def _log_change(
        self, record: StoredRecord, what: str, old: str | None, new: str | None, source: str
    ) -> None:
        self.changes.append(
            {
                "at": self._last_ms or self.now_ms(),
                "objectType": record.object_type,
                "objectId": record.id,
                "property": what,
                "old": old,
                "new": new,
                "source": source,
            }
        )

    # ----- associations -------------------------------------------------------------------------

    def associate(self, from_type: str, from_id: str, to_type: str, to_id: str, source: str) -> list[Change]:
        with self.lock:
            from_type, to_type = resolve_type(from_type), resolve_type(to_type)
            self._get(from_type, from_id)
            self._get(to_type, to_id)
            return self.links.link(from_type, str(from_id), to_type, str(to_id), source)

    def dissociate(self, from_type: str, from_id: str, to_type: str, to_id: str, source: str) -> list[Change]:
        with self.lock:
            from_type, to_type = resolve_type(from_type), resolve_type(to_type)
            return self.links.unlink(from_type, str(from_id), to_type, str(to_id), source)

    def associated_ids(self, from_type: str, from_id: str, to_type: str) -> list[str]:
        with self.lock:
            return self.links.ids(resolve_type(from_type), str(from_id), resolve_type(to_type))

    def association_types(self, from_type: str, to_type: str) -> list[dict[str, Any]]:
        return association_types(resolve_type(from_type), resolve_type(to_type))

    # ----- workflows and lists ------------------------------------------------------------------

    def enroll(self, workflow_id: int, email: str) -> None:
        """Legacy enrollment: raises what HubSpot would answer; returns quietly on 204."""
        with self.lock:
            self.automation.enroll(workflow_id, email, self.now_ms(), self._contact_by_email)

    def unenroll(self, workflow_id: int, email: str) -> None:
        with self.lock:
            self.automation.unenroll(workflow_id, email, self._contact_by_email)

    def enrollments_of(self, contact_id: str) -> list[dict[str, Any]]:
        with self.lock:
            if contact_id not in self.objects["contacts"]:
                raise not_found(f"Contact {contact_id} does not exist.")
            return self.automation.enrollments_of(contact_id)

    def remove_from_list(self, list_id: str, record_ids: list[str]) -> dict[str, Any]:
        with self.lock:
            return self.automation.remove_from_list(list_id, record_ids)

    def list_members_page(self, list_id: str, after: str | None, limit: int) -> dict[str, Any]:
        with self.lock:
            return self.automation.members_page(list_id, after, limit)

    def _contact_by_email(self, email: str) -> StoredRecord | None:
        wanted = email.strip().lower()
        for contact in self.objects["contacts"].values():
            if contact.properties.get("email", "").lower() == wanted:
                return contact
        return None

    def get_list(self, list_id: str) -> dict[str, Any]:
        with self.lock:
            return self.automation.get_list(list_id)

    def add_to_list(self, list_id: str, record_ids: list[str]) -> dict[str, Any]:
        with self.lock:
            return self.automation.add_to_list(
                list_id, record_ids, lambda object_type, record_id: record_id in self.objects[object_type]
            )

    def flows(self) -> list[dict[str, Any]]:
        with self.lock:
            return self.automation.flows()

    def workflow_id_mappings(self, inputs: list[dict[str, Any]]) -> tuple[list[Any], list[Any]]:
        with self.lock:
            return self.automation.workflow_id_mappings(inputs)

    # ----- control-API views --------------------------------------------------------------------

    def snapshot(self, object_type: str, ids: list[str] | None = None) -> list[dict[str, Any]]:
        with self.lock:
            resolved = resolve_type(object_type)
            chosen = ids if ids is not None else sorted(self.objects[resolved], key=numeric_key)
            return [self.objects[resolved][i].snapshot() for i in chosen if i in self.objects[resolved]]

    def enrollments(self) -> dict[str, Any]:
        with self.lock:
            return self.automation.enrollments()

    def list_memberships(self) -> dict[str, Any]:
        with self.lock:
            return self.automation.list_memberships()
