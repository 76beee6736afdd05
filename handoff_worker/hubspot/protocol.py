"""What the rest of the project may ask of HubSpot. The handoff engine depends on this, never on
the SDK. The SDK-backed implementation is `handoff_worker.hubspot.gateway.SdkGateway`.

Every method raises only our errors (`handoff_worker.errors`): `TransientHubSpotError` (retry
later), `PermanentHubSpotError` (the request or data must change), `NotFoundError`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from handoff_worker.domain.models import (
    BatchUpdateResult,
    CrmObject,
    Flow,
    ListInfo,
    ListMembershipResult,
    NewTask,
    ObjectType,
    Pipeline,
    PropertyDefinition,
    SearchFilter,
    SearchPage,
)


class HubSpotGateway(Protocol):
    @property
    def calls_made(self) -> int:
        """HTTP requests sent to HubSpot by this gateway so far (retries included)."""
        ...

    def get_deal(self, deal_id: str, properties: Sequence[str]) -> CrmObject: ...

    def get_contact(self, contact_id: str, properties: Sequence[str]) -> CrmObject: ...

    def batch_read(
        self, object_type: ObjectType, ids: Sequence[str], properties: Sequence[str]
    ) -> list[CrmObject]:
        """Any number of ids; sent in chunks of 100. Unknown ids are left out of the answer."""
        ...

    def batch_update_contacts(self, updates: Mapping[str, Mapping[str, str]]) -> BatchUpdateResult:
        """Any number of contacts; chunks of 100. A 207 comes back as `errors`, not raised."""
        ...

    def associated_ids(self, from_type: ObjectType, object_id: str, to_type: ObjectType) -> list[str]:
        """Every associated id (v4, all pages)."""
        ...

    def batch_associated_ids(
        self, from_type: ObjectType, ids: Sequence[str], to_type: ObjectType
    ) -> dict[str, list[str]]:
        """v4 batch read, chunks of 1,000 inputs; every input id is a key (empty list if none)."""
        ...

    def deal_pipelines(self) -> list[Pipeline]: ...

    def search(
        self,
        object_type: ObjectType,
        filter_groups: Sequence[Sequence[SearchFilter]],
        *,
        properties: Sequence[str],
        sort_property: str | None = None,
        ascending: bool = True,
        limit: int = 200,
        after: str | None = None,
    ) -> SearchPage:
        """One page of a search (paced by the search rate limit)."""
        ...

    def create_task(self, task: NewTask) -> str:
        """Create a task associated to the deal and/or contact; returns its id."""
        ...

    def enroll_in_workflow(self, workflow_id: str, email: str) -> None:
        """Legacy enrollment (204). Raises NotFoundError for an unknown workflow or email."""
        ...

    def unenroll_from_workflow(self, workflow_id: str, email: str) -> None:
        """Legacy unenrollment (204) by the legacy workflow id. A contact not enrolled is no error."""
        ...

    def current_enrollments(self, contact_id: str) -> list[str]:
        """The legacy ids of the workflows the contact is enrolled in now."""
        ...

    def add_to_list(self, list_id: str, contact_ids: Iterable[str]) -> ListMembershipResult: ...

    def remove_from_list(self, list_id: str, contact_ids: Iterable[str]) -> None:
        """Static lists only; ids that are not members are ignored (HubSpot's own rule)."""
        ...

    def list_members(self, list_id: str) -> list[str]:
        """Every member's record id (all pages)."""
        ...

    def get_list(self, list_id: str) -> ListInfo: ...

    def get_property(self, object_type: ObjectType, name: str) -> PropertyDefinition: ...

    def create_property(self, object_type: ObjectType, definition: PropertyDefinition) -> None: ...

    def list_flows(self) -> list[Flow]: ...

    def flow_to_workflow_ids(self, flow_ids: Sequence[str]) -> dict[str, str]:
        """v4 flow id → legacy (v2) workflow id, for the ids HubSpot knows."""
        ...
