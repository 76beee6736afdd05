"""Webhook deliveries: shape, batching, v1/v3 signatures (checked with the SDK's helper), retries."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from hubspot import HubSpot
from hubspot.utils.signature import Signature

from handoff_worker.sandbox.testing import SandboxServer
from handoff_worker.sandbox.webhooks import DEFAULT_CLIENT_SECRET

if TYPE_CHECKING:
    from tests.sandbox.conftest import Receiver


def _point_at(sandbox: SandboxServer, receiver: Receiver, **settings: Any) -> None:
    sandbox.control.configure(webhook_url=receiver.url, **settings)


def test_rep_losing_a_deal_sends_signed_property_changes(sandbox: SandboxServer, receiver: Receiver) -> None:
    _point_at(sandbox, receiver)
    sandbox.control.lose_deal("2001", "Competitor")
    sandbox.control.wait_for_webhooks(timeout=10)
    [request] = receiver.received
    headers, body = request["headers"], request["body"]
    assert Signature.is_valid(
        signature=headers["X-HubSpot-Signature-v3"],
        client_secret=DEFAULT_CLIENT_SECRET,
        request_body=body,
        http_uri=receiver.url,
        http_method="POST",
        signature_version="v3",
        timestamp=headers["X-HubSpot-Request-Timestamp"],
    )
    assert headers["X-HubSpot-Signature-Version"] == "v1"
    assert Signature.is_valid(
        headers["X-HubSpot-Signature"], DEFAULT_CLIENT_SECRET, body, signature_version="v1"
    )
    events = {e["propertyName"]: e for e in receiver.events()}
    assert events["dealstage"]["propertyValue"] == "closedlost"
    assert events["closed_lost_reason"]["propertyValue"] == "Competitor"
    stage = events["dealstage"]
    assert stage["subscriptionType"] == "deal.propertyChange"
    assert (stage["objectId"], stage["changeSource"], stage["attemptNumber"]) == (2001, "CRM_UI", 0)
    assert {"eventId", "subscriptionId", "portalId", "appId", "occurredAt", "sourceId"} <= stage.keys()


def test_the_lead_reason_is_watched_by_default_as_the_readme_says_to_subscribe(
    sandbox: SandboxServer, receiver: Receiver
) -> None:
    # A reason filled in after the lead was disqualified must reach the intake on its own.
    sandbox.control.rep_update("contacts", "3006", {"hs_lead_status": "UNQUALIFIED"})
    _point_at(sandbox, receiver)
    sandbox.control.rep_update("contacts", "3006", {"handoff_unqualified_reason": "Pricing"})
    sandbox.control.wait_for_webhooks(timeout=10)
    [event] = [e for e in receiver.events() if e["propertyName"] == "handoff_unqualified_reason"]
    assert (event["subscriptionType"], event["objectId"]) == ("contact.propertyChange", 3006)


def test_api_writes_come_back_as_integration_changes(
    client: HubSpot, sandbox: SandboxServer, receiver: Receiver
) -> None:
    _point_at(sandbox, receiver, app_id=777)
    client.crm.contacts.batch_api.update(
        {"inputs": [{"id": "3002", "properties": {"hs_lead_status": "NEW"}}]}
    )
    client.crm.contacts.batch_api.update({"inputs": [{"id": "3002", "properties": {"firstname": "Sammy"}}]})
    sandbox.control.wait_for_webhooks(timeout=10)
    [event] = receiver.events()  # firstname is not watched
    assert (event["propertyName"], event["changeSource"], event["sourceId"]) == (
        "hs_lead_status",
        "INTEGRATION",
        "777",
    )
    assert event["appId"] == 777


def test_failed_deliveries_are_retried_with_growing_attempt_numbers(
    sandbox: SandboxServer, receiver: Receiver
) -> None:
    receiver.fail_first, receiver.fail_status = 2, 503
    _point_at(sandbox, receiver)
    sandbox.control.rep_update("contacts", "3006", {"hs_lead_status": "UNQUALIFIED"})
    state = sandbox.control.wait_for_webhooks(timeout=10)
    attempts = [e["attemptNumber"] for r in receiver.received for e in json.loads(r["body"])]
    assert attempts == [0, 1, 2]
    assert [r["answered"] for r in receiver.received] == [503, 503, 204]
    assert (state["delivered"], state["failedAttempts"]) == (1, 2)


def test_delivery_gives_up_after_ten_attempts(sandbox: SandboxServer, receiver: Receiver) -> None:
    receiver.fail_first, receiver.fail_status = 100, 400
    _point_at(sandbox, receiver, retry_delays=[0.01] * 9)
    sandbox.control.rep_update("contacts", "3006", {"hs_lead_status": "NEW"})
    state = sandbox.control.wait_for_webhooks(timeout=10)
    assert len(receiver.received) == 10
    assert (state["failed"], state["delivered"]) == (1, 0)


def test_creation_association_merge_and_deletion_events(sandbox: SandboxServer, receiver: Receiver) -> None:
    _point_at(sandbox, receiver)
    sandbox.control.associate("2002", "3006")
    sandbox.control.dissociate("2002", "3006")
    sandbox.control.rep_merge("contacts", "3001", "3002")
    created = sandbox.control.rep_create("deals", {"dealname": "Fresh"})
    sandbox.control.rep_delete("deals", created["id"])
    sandbox.control.wait_for_webhooks(timeout=10)
    by_type: dict[str, list[dict[str, Any]]] = {}
    for event in receiver.events():
        by_type.setdefault(event["subscriptionType"], []).append(event)
    linked, unlinked = by_type["deal.associationChange"][:2]
    assert (linked["associationType"], linked["fromObjectId"], linked["toObjectId"]) == (
        "DEAL_TO_CONTACT",
        2002,
        3006,
    )
    assert (linked["associationRemoved"], unlinked["associationRemoved"]) == (False, True)
    [merge] = by_type["contact.merge"]
    assert (merge["primaryObjectId"], merge["mergedObjectIds"], merge["newObjectId"]) == (3001, [3002], 3001)
    assert by_type["deal.creation"][0]["objectId"] == int(created["id"])
    assert by_type["deal.deletion"][0]["objectId"] == int(created["id"])
    assert sandbox.control.associated_ids("contacts", "3001", "deals") == ["2001"]


def test_many_changes_are_batched_below_100_events_per_request(
    sandbox: SandboxServer, receiver: Receiver
) -> None:
    ids = [str(8000 + i) for i in range(150)]
    contacts = [{"id": cid, "properties": {"email": f"b{i}@example.com"}} for i, cid in enumerate(ids)]
    sandbox.control.seed({"contacts": contacts})
    _point_at(sandbox, receiver, batch_window=0.5)
    for contact_id in ids:
        sandbox.control.rep_update("contacts", contact_id, {"hs_lead_status": "NEW"})
    sandbox.control.wait_for_webhooks(timeout=20)
    sizes = [len(json.loads(r["body"])) for r in receiver.received]
    assert sum(sizes) == 150
    assert max(sizes) < 100 and len(sizes) < 150
