"""Workflow enrollment (legacy v2), flows v4, lists v3 and properties."""

from __future__ import annotations

import pytest
import requests
from hubspot import HubSpot
from hubspot.crm.properties import ApiException as PropertiesApiException

from handoff_worker.sandbox.testing import SandboxServer

AUTH = {"Authorization": "Bearer test-token"}


def _enroll(sandbox: SandboxServer, workflow_id: int, email: str) -> requests.Response:
    url = f"{sandbox.url}/automation/v2/workflows/{workflow_id}/enrollments/contacts/{email}"
    return requests.post(url, headers=AUTH, timeout=5)


def test_enrollment_is_204_once_without_reenrollment(sandbox: SandboxServer) -> None:
    first, second = (
        _enroll(sandbox, 5101, "dana.lee@acme.example"),
        _enroll(sandbox, 5101, "DANA.LEE@acme.example"),
    )
    assert (first.status_code, first.content, second.status_code) == (204, b"", 204)
    competitor = sandbox.control.enrollments()["5101"]
    assert (competitor["contactIds"], competitor["count"]) == (["3001"], 1)
    assert [a["outcome"] for a in competitor["attempts"]] == ["enrolled", "already_enrolled"]


def test_reenrollment_allowed_workflow_enrolls_again(sandbox: SandboxServer) -> None:
    for _ in range(2):
        assert _enroll(sandbox, 5103, "dana.lee@acme.example").status_code == 204
    assert sandbox.control.enrollments()["5103"]["count"] == 2


@pytest.mark.parametrize(
    ("workflow_id", "email", "status"),
    [
        (999, "dana.lee@acme.example", 404),  # unknown workflow
        (5106, "dana.lee@acme.example", 400),  # disabled
        (5107, "dana.lee@acme.example", 400),  # deal-based
        (5101, "nobody@example.com", 404),  # unknown contact
    ],
)
def test_enrollment_refusals(sandbox: SandboxServer, workflow_id: int, email: str, status: int) -> None:
    answer = _enroll(sandbox, workflow_id, email)
    assert answer.status_code == status
    assert answer.json()["status"] == "error"
    assert sandbox.control.enrollments()["5101"]["count"] == 0


def test_flows_are_paged_and_map_to_workflow_ids(sandbox: SandboxServer) -> None:
    first = requests.get(
        f"{sandbox.url}/automation/v4/flows", params={"limit": 4}, headers=AUTH, timeout=5
    ).json()
    rest = requests.get(
        f"{sandbox.url}/automation/v4/flows",
        params={"limit": 4, "after": first["paging"]["next"]["after"]},
        headers=AUTH,
        timeout=5,
    ).json()
    flows = first["results"] + rest["results"]
    assert len(flows) == 7 and "paging" not in rest
    assert {f["id"]: f["isEnabled"] for f in flows}["1705106"] is False
    mapping = requests.post(
        f"{sandbox.url}/automation/v4/workflow-id-mappings/batch/read",
        json={
            "inputs": [
                {"type": "FLOW_ID", "flowId": "1705101"},
                {"type": "WORKFLOW_ID", "workflowId": "5107"},
            ]
        },
        headers=AUTH,
        timeout=5,
    ).json()
    assert mapping["results"] == [
        {"flowId": 1705101, "workflowId": 5101},
        {"flowId": 1705107, "workflowId": 5107},
    ]


def test_static_list_membership(client: HubSpot, sandbox: SandboxServer) -> None:
    fetched = client.crm.lists.lists_api.get_by_id("701")
    assert (fetched.list.processing_type, fetched.list.object_type_id) == ("MANUAL", "0-1")
    answer = client.crm.lists.memberships_api.add("701", ["3001", "424242"])
    assert answer.records_ids_added == ["3001"]
    assert answer.record_ids_missing == ["424242"]
    assert sandbox.control.list_memberships()["701"]["memberIds"] == ["3001"]


def test_dynamic_list_refuses_members(sandbox: SandboxServer) -> None:
    answer = requests.put(
        f"{sandbox.url}/crm/v3/lists/703/memberships/add", json=["3001"], headers=AUTH, timeout=5
    )
    assert answer.status_code == 400


def test_property_read_and_create(client: HubSpot) -> None:
    reason = client.crm.properties.core_api.get_by_name("deals", "closed_lost_reason")
    assert len(reason.options) == 9
    assert "Not a Fit - Might Be in the Future" in {o.value for o in reason.options}
    marker = client.crm.properties.core_api.get_by_name("contacts", "handoff_recycled_at")
    assert marker.type == "datetime"
    definition = {
        "name": "nurture_stream",
        "label": "Nurture track",
        "type": "string",
        "fieldType": "text",
        "groupName": "contactinformation",
    }
    created = client.crm.properties.core_api.create("contacts", definition)
    assert created.name == "nurture_stream"
    with pytest.raises(PropertiesApiException) as caught:
        client.crm.properties.core_api.create("contacts", definition)
    assert caught.value.status == 409
