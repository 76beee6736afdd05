"""Every gateway operation through the real SDK, over HTTP, against the sandbox."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from gateway_fixtures import REASON_PROPERTY

from handoff_worker.domain.models import NewTask, ObjectType, PropertyDefinition, PropertyOption, SearchFilter
from handoff_worker.errors import NotFoundError, PermanentHubSpotError
from handoff_worker.hubspot.gateway import SdkGateway
from handoff_worker.sandbox.testing import SandboxServer


def test_get_deal_returns_only_the_asked_properties(gateway: SdkGateway, hub: SandboxServer) -> None:
    deal = gateway.get_deal("500", ["dealstage", REASON_PROPERTY, "nosuchproperty"])

    assert deal.id == "500"
    assert deal.properties == {"dealstage": "closedlost", REASON_PROPERTY: "price", "nosuchproperty": None}
    assert deal.updated_at is not None and deal.updated_at.tzinfo is not None
    [request] = hub.control.requests("/crm/v3/objects/deals/500")
    assert "properties=dealstage" in request["query"]
    assert gateway.calls_made == 1


def test_get_contact_of_unknown_id_is_not_found(gateway: SdkGateway) -> None:
    with pytest.raises(NotFoundError) as caught:
        gateway.get_contact("999999", ["email"])

    assert caught.value.status == 404
    assert caught.value.operation == "get contact"
    assert caught.value.correlation_id


def test_batch_read_chunks_by_100_and_leaves_out_unknown_ids(gateway: SdkGateway, hub: SandboxServer) -> None:
    ids = [str(1000 + n) for n in range(250)] + ["424242"]

    found = gateway.batch_read(ObjectType.CONTACT, ids, ["email"])

    assert sorted(c.id for c in found) == sorted(ids[:-1])
    assert {c.properties["email"] for c in found if c.id == "1000"} == {"m0@example.com"}
    sent = hub.control.requests("/crm/v3/objects/contacts/batch/read")
    assert [len(r["body"]["inputs"]) for r in sent] == [100, 100, 51]
    assert all(r["body"]["properties"] == ["email"] for r in sent)


def test_batch_update_reports_207_errors_per_record(gateway: SdkGateway, hub: SandboxServer) -> None:
    updates = {str(n): {"lifecyclestage": ""} for n in range(1, 4)} | {"31337": {"lifecyclestage": ""}}

    result = gateway.batch_update_contacts(updates)

    assert sorted(c.id for c in result.updated) == ["1", "2", "3"]
    assert [e.ids for e in result.errors] == [("31337",)]
    assert result.errors[0].category == "OBJECT_NOT_FOUND"
    assert hub.control.object("contacts", "2")["properties"]["lifecyclestage"] == ""


def test_batch_update_chunks_by_100(gateway: SdkGateway, hub: SandboxServer) -> None:
    updates = {str(1000 + n): {"hs_lead_status": "OPEN"} for n in range(201)}

    result = gateway.batch_update_contacts(updates)

    assert len(result.updated) == 201 and not result.errors
    sent = hub.control.requests("/crm/v3/objects/contacts/batch/update")
    assert [len(r["body"]["inputs"]) for r in sent] == [100, 100, 1]


def test_associated_ids_follows_every_page(gateway: SdkGateway, hub: SandboxServer) -> None:
    ids = gateway.associated_ids(ObjectType.DEAL, "600", ObjectType.CONTACT)

    assert len(ids) == 1201 and len(set(ids)) == 1201
    pages = hub.control.requests("/crm/v4/objects/deals/600/associations/contacts")
    assert len(pages) == 3
    assert all("limit=500" in p["query"] for p in pages)


def test_batch_associated_ids_keys_every_input(gateway: SdkGateway) -> None:
    found = gateway.batch_associated_ids(ObjectType.DEAL, ["500", "600", "404404"], ObjectType.CONTACT)

    assert sorted(found["500"]) == ["1", "2", "3"]
    assert len(found["600"]) == 1201
    assert found["404404"] == []


def test_batch_associated_ids_chunks_by_1000(gateway: SdkGateway, hub: SandboxServer) -> None:
    contact_ids = [str(1000 + n) for n in range(1201)]

    found = gateway.batch_associated_ids(ObjectType.CONTACT, contact_ids, ObjectType.DEAL)

    assert all(found[i] == ["600"] for i in contact_ids)
    sent = hub.control.requests("/crm/v4/associations/contacts/deals/batch/read")
    assert [len(r["body"]["inputs"]) for r in sent] == [1000, 201]


def test_deal_pipelines_parse_stage_metadata(gateway: SdkGateway) -> None:
    [pipeline] = gateway.deal_pipelines()

    stages = {s.id: s for s in pipeline.stages}
    assert pipeline.id == "default"
    assert stages["closedlost"].is_closed_lost
    assert stages["closedlost"].probability == 0.0
    assert not stages["fake"].is_closed_lost  # labelled "Closed lost", probability 0.8
    assert not stages["appointmentscheduled"].is_closed
    assert [s.id for s in pipeline.stages][:2] == ["appointmentscheduled", "closedwon"]


def test_search_sends_filters_and_parses_one_page(gateway: SdkGateway, hub: SandboxServer) -> None:
    page = gateway.search(
        ObjectType.DEAL,
        [[SearchFilter("dealstage", "EQ", "closedlost")], [SearchFilter("amount", "HAS_PROPERTY")]],
        properties=["dealname"],
        sort_property="hs_lastmodifieddate",
        limit=1,
    )

    assert page.total == 2
    assert len(page.results) == 1 and page.next_after is not None
    assert set(page.results[0].properties) == {"dealname"}
    [request] = hub.control.requests("/crm/v3/objects/deals/search")
    assert request["body"]["filterGroups"][0]["filters"][0] == {
        "propertyName": "dealstage",
        "operator": "EQ",
        "value": "closedlost",
    }
    assert request["body"]["sorts"] == [{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}]
    rest = gateway.search(
        ObjectType.DEAL,
        [[SearchFilter("dealstage", "EQ", "closedlost")]],
        properties=["dealname"],
        limit=200,
        after=page.next_after,
    )
    assert {r.id for r in rest.results} | {page.results[0].id} == {"500", "600"}


def test_search_limit_above_200_is_refused_before_sending(gateway: SdkGateway) -> None:
    with pytest.raises(ValueError, match="1 to 200"):
        gateway.search(ObjectType.DEAL, [], properties=["dealname"], limit=201)
    assert gateway.calls_made == 0


def test_create_task_links_deal_and_contact(gateway: SdkGateway, hub: SandboxServer) -> None:
    due = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    task = NewTask(
        subject="Call back", body="Lost on price", owner_id="11", due_at=due, deal_id="500", contact_id="1"
    )

    task_id = gateway.create_task(task)

    [request] = hub.control.requests("/crm/v3/objects/tasks")
    body = request["body"]
    assert body["properties"] == {
        "hs_task_subject": "Call back",
        "hs_task_body": "Lost on price",
        "hs_timestamp": str(int(due.timestamp() * 1000)),
        "hs_task_priority": "HIGH",
        "hs_task_status": "NOT_STARTED",
        "hubspot_owner_id": "11",
    }
    type_ids = sorted(a["types"][0]["associationTypeId"] for a in body["associations"])
    assert type_ids == [204, 216]
    assert hub.control.object("tasks", task_id)["id"] == task_id


def test_enroll_in_workflow_quotes_the_email(gateway: SdkGateway, hub: SandboxServer) -> None:
    gateway.enroll_in_workflow("501", "c1@example.com")

    assert hub.control.enrollments()["501"]["contactIds"] == ["1"]
    [request] = hub.control.requests("/automation/v2/workflows/501/enrollments/contacts/")
    assert request["status"] == 204


def test_enroll_unknown_workflow_or_email_is_not_found(gateway: SdkGateway) -> None:
    with pytest.raises(NotFoundError):
        gateway.enroll_in_workflow("999", "c1@example.com")
    with pytest.raises(NotFoundError):
        gateway.enroll_in_workflow("501", "nobody@example.com")


def test_enroll_in_disabled_workflow_is_permanent(gateway: SdkGateway) -> None:
    with pytest.raises(PermanentHubSpotError) as caught:
        gateway.enroll_in_workflow("502", "c1@example.com")
    assert caught.value.status == 400 and "not enabled" in caught.value.message


def test_lists_get_and_add(gateway: SdkGateway, hub: SandboxServer) -> None:
    info = gateway.get_list("77")
    assert (info.id, info.name, info.is_static, info.object_type_id) == ("77", "Recycled", True, "0-1")
    gateway.add_to_list("77", ["1"])

    result = gateway.add_to_list("77", ["1", "2", "88888"])

    assert result.added == ("2",)
    assert result.missing == ("88888",)
    assert result.already_members == ("1",)
    assert hub.control.list_memberships()["77"]["memberIds"] == ["1", "2"]


def test_add_to_list_chunks_by_100(gateway: SdkGateway, hub: SandboxServer) -> None:
    result = gateway.add_to_list("77", [str(1000 + n) for n in range(150)])

    assert len(result.added) == 150
    sent = hub.control.requests("/crm/v3/lists/77/memberships/add")
    assert [len(r["body"]) for r in sent] == [100, 50]


def test_get_unknown_list_is_not_found(gateway: SdkGateway) -> None:
    with pytest.raises(NotFoundError):
        gateway.get_list("4040")
    with pytest.raises(NotFoundError):
        gateway.add_to_list("4040", ["1"])


def test_adding_to_an_active_list_is_permanent(gateway: SdkGateway) -> None:
    with pytest.raises(PermanentHubSpotError) as caught:
        gateway.add_to_list("78", ["1"])
    assert caught.value.status == 400 and "MANUAL" in caught.value.message


def test_properties_get_and_create(gateway: SdkGateway) -> None:
    existing = gateway.get_property(ObjectType.DEAL, REASON_PROPERTY)
    assert [o.value for o in existing.options] == ["price", "timing"]
    assert existing.type == "enumeration"
    new = PropertyDefinition(
        object_type="deals",
        name="recycle_reason",
        label="Recycle reason",
        type="enumeration",
        field_type="select",
        options=(PropertyOption("Budget", "budget"),),
    )

    gateway.create_property(ObjectType.DEAL, new)

    created = gateway.get_property(ObjectType.DEAL, "recycle_reason")
    assert (created.label, created.field_type, created.group_name) == (
        "Recycle reason",
        "select",
        "dealinformation",
    )
    assert created.options == (PropertyOption("Budget", "budget", False),)


def test_flows_and_their_workflow_ids(gateway: SdkGateway) -> None:
    flows = gateway.list_flows()

    assert [(f.id, f.is_enabled, f.object_type_id) for f in flows] == [
        ("9001", True, "0-1"),
        ("9002", False, "0-1"),
    ]
    assert gateway.flow_to_workflow_ids(["9001", "9002", "123"]) == {"9001": "501", "9002": "502"}


@pytest.mark.parametrize("workflow_id", ["999", "502"])
def test_failed_enrollment_error_names_the_workflow_not_the_email(
    gateway: SdkGateway, workflow_id: str
) -> None:
    # The error text is kept in the audit, the dead letter and the logs: no personal data in it.
    with pytest.raises(PermanentHubSpotError) as caught:
        gateway.enroll_in_workflow(workflow_id, "c1@example.com")
    assert caught.value.operation == f"enroll contact in workflow {workflow_id}"
    assert "c1@example.com" not in str(caught.value) and "c1%40example.com" not in str(caught.value)
