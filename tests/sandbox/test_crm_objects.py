"""CRM object endpoints through the real SDK: reads, batches, writes and the lifecycle quirk."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hubspot import HubSpot
from hubspot.crm.contacts import ApiException as ContactsApiException
from hubspot.crm.deals import ApiException as DealsApiException

from handoff_worker.sandbox.testing import SandboxServer


def test_read_deal_returns_requested_and_system_properties(client: HubSpot) -> None:
    deal = client.crm.deals.basic_api.get_by_id("2001", properties=["dealname", "dealstage", "amount"])
    assert deal.id == "2001"
    assert deal.properties["dealname"] == "Acme expansion"
    assert deal.properties["dealstage"] == "contractsent"
    assert deal.properties["hs_object_id"] == "2001"
    assert deal.properties["hs_lastmodifieddate"].endswith("Z")


def test_unknown_deal_is_404_with_hubspot_error_body(client: HubSpot) -> None:
    with pytest.raises(DealsApiException) as caught:
        client.crm.deals.basic_api.get_by_id("999999")
    body = json.loads(caught.value.body)
    assert caught.value.status == 404
    assert body["status"] == "error"
    assert body["category"] == "OBJECT_NOT_FOUND"
    assert len(body["correlationId"]) == 36


def test_batch_read_reports_unknown_ids_as_207_errors(client: HubSpot) -> None:
    answer = client.crm.contacts.batch_api.read(
        {"properties": ["email", "lifecyclestage"], "inputs": [{"id": "3001"}, {"id": "9"}]}
    )
    assert [c.id for c in answer.results] == ["3001"]
    assert answer.results[0].properties["email"] == "dana.lee@acme.example"
    assert answer.errors[0].category == "OBJECT_NOT_FOUND"
    assert answer.errors[0].context == {"ids": ["9"]}
    assert answer.num_errors == 1


@pytest.mark.parametrize("operation", ["read", "update"])
def test_batches_over_100_inputs_are_rejected(client: HubSpot, operation: str) -> None:
    inputs: list[dict[str, Any]] = [{"id": str(i), "properties": {"firstname": "x"}} for i in range(101)]
    with pytest.raises(ContactsApiException) as caught:
        getattr(client.crm.contacts.batch_api, operation)({"inputs": inputs, "properties": []})
    assert caught.value.status == 400
    assert json.loads(caught.value.body)["category"] == "VALIDATION_ERROR"


def _lifecycle(client: HubSpot, contact_id: str) -> str:
    contact = client.crm.contacts.basic_api.get_by_id(contact_id, properties=["lifecyclestage"])
    return str(contact.properties["lifecyclestage"])


def _write_lifecycle(client: HubSpot, contact_id: str, stage: str) -> Any:
    return client.crm.contacts.batch_api.update(
        {"inputs": [{"id": contact_id, "properties": {"lifecyclestage": stage}}]}
    )


def test_lifecycle_stage_ignores_a_backward_write_without_clearing(client: HubSpot) -> None:
    answer = _write_lifecycle(client, "3001", "lead")  # seeded as opportunity
    assert answer.status == "COMPLETE"
    assert _lifecycle(client, "3001") == "opportunity"


def test_lifecycle_stage_moves_back_after_clearing_in_a_separate_request(client: HubSpot) -> None:
    _write_lifecycle(client, "3001", "")
    assert _lifecycle(client, "3001") == ""
    _write_lifecycle(client, "3001", "lead")
    assert _lifecycle(client, "3001") == "lead"
    _write_lifecycle(client, "3001", "customer")  # forward is always allowed
    assert _lifecycle(client, "3001") == "customer"


def test_batch_update_with_unknown_id_answers_207_and_updates_the_rest(client: HubSpot) -> None:
    answer = client.crm.contacts.batch_api.update(
        {
            "inputs": [
                {"id": "3002", "properties": {"hs_lead_status": "UNQUALIFIED"}},
                {"id": "9", "properties": {}},
            ]
        }
    )
    assert answer.errors[0].context == {"ids": ["9"]}
    assert answer.results[0].properties["hs_lead_status"] == "UNQUALIFIED"
    assert (
        client.crm.contacts.basic_api.get_by_id("3002", properties=["hs_lead_status"]).properties[
            "hs_lead_status"
        ]
        == "UNQUALIFIED"
    )


def test_unknown_property_is_rejected(client: HubSpot) -> None:
    with pytest.raises(ContactsApiException) as caught:
        client.crm.contacts.batch_api.update(
            {"inputs": [{"id": "3001", "properties": {"no_such_prop": "1"}}]}
        )
    body = json.loads(caught.value.body)
    assert caught.value.status == 400
    assert body["errors"][0]["code"] == "PROPERTY_DOESNT_EXIST"


def test_dropdown_value_outside_options_is_rejected(client: HubSpot) -> None:
    with pytest.raises(DealsApiException) as caught:
        client.crm.deals.basic_api.update("2001", {"properties": {"closed_lost_reason": "Bad vibes"}})
    assert caught.value.status == 400
    client.crm.deals.basic_api.update("2001", {"properties": {"closed_lost_reason": "Pricing"}})
    deal = client.crm.deals.basic_api.get_by_id("2001", properties=["closed_lost_reason"])
    assert deal.properties["closed_lost_reason"] == "Pricing"


def test_every_write_advances_last_modified(client: HubSpot) -> None:
    before = client.crm.deals.basic_api.get_by_id("2002").properties["hs_lastmodifieddate"]
    client.crm.deals.basic_api.update("2002", {"properties": {"amount": "1"}})
    after = client.crm.deals.basic_api.get_by_id("2002").properties["hs_lastmodifieddate"]
    assert after > before


def test_create_contact_and_pipelines(client: HubSpot) -> None:
    created = client.crm.contacts.basic_api.create({"properties": {"email": "new@example.com"}})
    assert client.crm.contacts.basic_api.get_by_id(created.id, properties=["email"]).properties["email"] == (
        "new@example.com"
    )
    pipelines = {p.id: p for p in client.crm.pipelines.pipelines_api.get_all("deals").results}
    assert set(pipelines) == {"default", "renewals", "partner"}
    lost = next(s for s in pipelines["default"].stages if s.id == "closedlost")
    assert lost.metadata == {"isClosed": "true", "probability": "0.0"}
    decoy = next(s for s in pipelines["partner"].stages if s.label == "Closed lost")
    assert decoy.metadata["probability"] == "0.8"


def test_task_created_with_deal_association(client: HubSpot, sandbox: SandboxServer) -> None:
    task = client.crm.objects.tasks.basic_api.create(
        {
            "properties": {
                "hs_task_subject": "Follow up",
                "hs_timestamp": "2030-01-01T00:00:00Z",
                "hubspot_owner_id": "7001",
                "hs_task_status": "",
            },
            "associations": [
                {
                    "to": {"id": "2001"},
                    "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 216}],
                }
            ],
        }
    )
    assert task.properties["hs_task_subject"] == "Follow up"
    assert sandbox.control.associated_ids("deals", "2001", "tasks") == [task.id]
    assert sandbox.control.object("tasks", task.id)["properties"]["hubspot_owner_id"] == "7001"


@pytest.mark.parametrize("value", ["2027-03-01", "1803859200000"])
def test_date_property_takes_a_day_or_its_midnight_utc(client: HubSpot, value: str) -> None:
    client.crm.contacts.basic_api.update("3001", {"properties": {"handoff_follow_up_date": value}})
    contact = client.crm.contacts.basic_api.get_by_id("3001", properties=["handoff_follow_up_date"])
    assert contact.properties["handoff_follow_up_date"] == value


@pytest.mark.parametrize(
    ("value", "why"),
    [("2027-03-01T10:00:00Z", "is at 10:0:0.0 UTC, not midnight!"), ("2027-02-30", "is not a valid date")],
)
def test_date_property_refuses_a_time_of_day_or_no_date(client: HubSpot, value: str, why: str) -> None:
    with pytest.raises(ContactsApiException) as caught:
        client.crm.contacts.basic_api.update("3001", {"properties": {"handoff_follow_up_date": value}})
    assert caught.value.status == 400
    assert why in json.loads(caught.value.body)["message"]
