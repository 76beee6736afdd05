"""Workflows (legacy enrollment, v4 flows and id mappings) and lists with their memberships."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from handoff_worker.sandbox.errors import batch_error, not_found, validation_error
from handoff_worker.sandbox.records import OBJECT_TYPE_IDS, StoredRecord


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


class Automation:
    """The portal's workflows, lists and every enrollment attempt. The portal holds the lock."""

    def __init__(self) -> None:
        self.workflows: dict[int, Workflow] = {}
        self.lists: dict[str, StaticOrDynamicList] = {}
        self.enrollment_attempts: list[dict[str, Any]] = []

    def add_workflow(self, raw: dict[str, Any]) -> None:
        workflow = Workflow(
            id=int(raw["id"]),
            name=raw.get("name", f"Workflow {raw['id']}"),
            enabled=bool(raw.get("enabled", True)),
            allow_reenrollment=bool(raw.get("allow_reenrollment", False)),
            object_type_id=raw.get("objectTypeId", "0-1"),
            flow_id=str(raw.get("flow_id", raw["id"])),
        )
        self.workflows[workflow.id] = workflow

    def add_list(self, raw: dict[str, Any]) -> None:
        hs_list = StaticOrDynamicList(
            list_id=str(raw["id"]),
            name=raw.get("name", f"List {raw['id']}"),
            processing_type=raw.get("processingType", "MANUAL"),
            object_type_id=raw.get("objectTypeId", "0-1"),
            member_ids=[str(m) for m in raw.get("members", [])],
        )
        self.lists[hs_list.list_id] = hs_list

    # ----- workflows ----------------------------------------------------------------------------

    def enroll(
        self, workflow_id: int, email: str, at_ms: int, find_contact: Callable[[str], StoredRecord | None]
    ) -> None:
        """Legacy enrollment of the contact with `email`: raises what HubSpot would answer."""
        workflow = self.workflows.get(workflow_id)
        attempt: dict[str, Any] = {"workflowId": workflow_id, "email": email, "at": at_ms}
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
            raise validation_error(f"Workflow {workflow_id} is not enabled; turn it on to enroll contacts.")
        contact = find_contact(email)
        if contact is None:
            attempt["outcome"] = "unknown_contact"
            raise not_found(f"No contact with email {email}.")
        attempt["contactId"] = contact.id
        if contact.id in workflow.enrolled_contact_ids and not workflow.allow_reenrollment:
            attempt["outcome"] = "already_enrolled"
            return
        workflow.enrolled_contact_ids.append(contact.id)
        attempt["outcome"] = "enrolled"

    def unenroll(
        self, workflow_id: int, email: str, find_contact: Callable[[str], StoredRecord | None]
    ) -> None:
        """Legacy unenrollment: 204 whether or not the contact was enrolled (unconfirmed in
        HubSpot's text; the worker treats both answers alike); 404 for an unknown workflow or email."""
        workflow = self.workflows.get(workflow_id)
        if workflow is None:
            raise not_found(f"Workflow {workflow_id} not found.")
        contact = find_contact(email)
        if contact is None:
            raise not_found(f"No contact with email {email}.")
        workflow.enrolled_contact_ids = [c for c in workflow.enrolled_contact_ids if c != contact.id]

    def enrollments_of(self, contact_id: str) -> list[dict[str, Any]]:
        """GET /automation/v2/workflows/enrollments/contacts/{vid}: the workflows it is in now."""
        return [
            {"id": w.id, "name": w.name, "enabled": w.enabled, "type": "DRIP_DELAY"}
            for w in sorted(self.workflows.values(), key=lambda w: w.id)
            if contact_id in w.enrolled_contact_ids
        ]

    def flows(self) -> list[dict[str, Any]]:
        return [
            {
                "id": w.flow_id,
                "isEnabled": w.enabled,
                "objectTypeId": w.object_type_id,
                "name": w.name,
                "revisionId": "1",
                "flowType": "WORKFLOW",
                "enrollmentCriteria": {"type": "LIST_BASED", "shouldReEnroll": w.allow_reenrollment},
            }
            for w in sorted(self.workflows.values(), key=lambda w: w.id)
        ]

    def workflow_id_mappings(self, inputs: list[dict[str, Any]]) -> tuple[list[Any], list[Any]]:
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
        errors = [batch_error("OBJECT_NOT_FOUND", "No workflow for these ids.", missing)] if missing else []
        return results, errors

    def enrollments(self) -> dict[str, Any]:
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

    # ----- lists --------------------------------------------------------------------------------

    def get_list(self, list_id: str) -> dict[str, Any]:
        hs_list = self.lists.get(str(list_id))
        if hs_list is None:
            raise not_found(f"List {list_id} does not exist.")
        return _list_to_api(hs_list)

    def add_to_list(
        self, list_id: str, record_ids: list[str], exists: Callable[[str, str], bool]
    ) -> dict[str, Any]:
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
            if not exists(record_type, record_id):
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

    def remove_from_list(self, list_id: str, record_ids: list[str]) -> dict[str, Any]:
        hs_list = self.lists.get(str(list_id))
        if hs_list is None:
            raise not_found(f"List {list_id} does not exist.")
        if hs_list.processing_type not in {"MANUAL", "SNAPSHOT"}:
            raise validation_error(
                f"List {list_id} is {hs_list.processing_type}; only MANUAL lists accept memberships."
            )
        wanted = set(map(str, record_ids))
        removed = [m for m in hs_list.member_ids if m in wanted]
        hs_list.member_ids = [m for m in hs_list.member_ids if m not in wanted]
        return {"recordIdsAdded": [], "recordIdsRemoved": removed, "recordIdsMissing": []}

    def members_page(self, list_id: str, after: str | None, limit: int) -> dict[str, Any]:
        """GET /crm/v3/lists/{listId}/memberships: members by ascending record id, paged."""
        hs_list = self.lists.get(str(list_id))
        if hs_list is None:
            raise not_found(f"List {list_id} does not exist.")
        ordered = sorted(hs_list.member_ids, key=lambda m: (len(m), m))
        start = (
            0
            if not after
            else next((i for i, m in enumerate(ordered) if (len(m), m) > (len(after), after)), len(ordered))
        )
        page = ordered[start : start + limit]
        body: dict[str, Any] = {
            "results": [{"recordId": m, "membershipTimestamp": "2026-01-01T00:00:00Z"} for m in page]
        }
        if start + limit < len(ordered):
            body["paging"] = {"next": {"after": page[-1]}}
        return body

    def list_memberships(self) -> dict[str, Any]:
        return {
            list_id: {
                "name": hs_list.name,
                "processingType": hs_list.processing_type,
                "memberIds": list(hs_list.member_ids),
            }
            for list_id, hs_list in self.lists.items()
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
