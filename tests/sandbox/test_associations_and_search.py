"""Associations v4 and CRM search through the real SDK."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hubspot import HubSpot
from hubspot.crm.associations.v4 import ApiException as AssociationsApiException
from hubspot.crm.contacts import ApiException as ContactsApiException

from handoff_worker.sandbox.testing import SandboxServer


def _seed_deal_with_contacts(sandbox: SandboxServer, count: int) -> None:
    contacts = [{"id": str(5000 + i), "properties": {"email": f"c{i}@example.com"}} for i in range(count)]
    associations = [{"deal": "2002", "contact": c["id"]} for c in contacts]
    sandbox.control.seed({"contacts": contacts, "associations": associations})


def test_association_pages_follow_the_after_cursor(client: HubSpot, sandbox: SandboxServer) -> None:
    _seed_deal_with_contacts(sandbox, 7)
    seen, after = [], None
    while True:
        page = client.crm.associations.v4.basic_api.get_page(
            "deals", "2002", "contacts", limit=3, after=after
        )
        seen += [r.to_object_id for r in page.results]
        assert all(r.association_types[0].type_id == 3 for r in page.results)
        if page.paging is None:
            break
        after = page.paging.next.after
    assert sorted(seen) == sorted(str(i) for i in [3003, *range(5000, 5007)])  # the SDK types ids as str


def test_associations_are_symmetric(client: HubSpot) -> None:
    page = client.crm.associations.v4.basic_api.get_page("contacts", "3001", "deals")
    assert [(r.to_object_id, r.association_types[0].type_id) for r in page.results] == [("2001", 4)]


def test_association_batch_read_with_unknown_id_is_207(client: HubSpot) -> None:
    answer = client.crm.associations.v4.batch_api.get_page(
        "deals", "contacts", {"inputs": [{"id": "2001"}, {"id": "404404"}]}
    )
    assert [r._from.id for r in answer.results] == ["2001"]
    assert sorted(t.to_object_id for t in answer.results[0].to) == ["3001", "3002"]
    assert answer.errors[0].context == {"ids": ["404404"]}


def test_association_batch_read_over_1000_inputs_is_400(client: HubSpot) -> None:
    with pytest.raises(AssociationsApiException) as caught:
        client.crm.associations.v4.batch_api.get_page(
            "deals", "contacts", {"inputs": [{"id": str(i)} for i in range(1001)]}
        )
    assert caught.value.status == 400


def _search(client: HubSpot, **request: Any) -> Any:
    return client.crm.contacts.search_api.do_search(request)


def test_search_or_of_groups_and_inside_groups(client: HubSpot) -> None:
    answer = _search(
        client,
        filterGroups=[
            {
                "filters": [
                    {"propertyName": "lifecyclestage", "operator": "EQ", "value": "opportunity"},
                    {"propertyName": "hubspot_owner_id", "operator": "EQ", "value": "7002"},
                ]
            },
            {"filters": [{"propertyName": "hs_lead_status", "operator": "IN", "values": ["CONNECTED"]}]},
        ],
        properties=["email"],
        sorts=[{"propertyName": "hs_object_id", "direction": "DESCENDING"}],
        limit=10,
    )
    assert [c.id for c in answer.results] == ["3005", "3004", "3003"]
    assert answer.total == 3


def test_search_datetime_filter_takes_ms_and_returns_iso(client: HubSpot, sandbox: SandboxServer) -> None:
    sandbox.control.seed(
        {
            "contacts": [
                {"id": "6001", "properties": {"email": "old@example.com", "hs_lastmodifieddate": "1000"}},
                {"id": "6002", "properties": {"email": "mid@example.com", "hs_lastmodifieddate": "2000"}},
                {"id": "6003", "properties": {"email": "tie@example.com", "hs_lastmodifieddate": "2000"}},
            ]
        }
    )
    answer = _search(
        client,
        filterGroups=[
            {
                "filters": [
                    {
                        "propertyName": "hs_lastmodifieddate",
                        "operator": "BETWEEN",
                        "value": "1500",
                        "highValue": "2000",
                    }
                ]
            }
        ],
        sorts=[{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}],
        limit=10,
    )
    assert [c.id for c in answer.results] == ["6002", "6003"]
    assert answer.results[0].properties["hs_lastmodifieddate"] == "1970-01-01T00:00:02.000Z"


@pytest.mark.parametrize(
    "request_body",
    [
        {"limit": 201},
        {"filterGroups": [{"filters": []}] * 6},
        {"filterGroups": [{"filters": [{"propertyName": "email", "operator": "HAS_PROPERTY"}] * 7}]},
    ],
    ids=["limit-over-200", "six-groups", "seven-filters"],
)
def test_search_limits_are_400(client: HubSpot, request_body: dict[str, Any]) -> None:
    with pytest.raises(ContactsApiException) as caught:
        _search(client, **request_body)
    assert caught.value.status == 400


def test_search_cannot_page_past_10000(client: HubSpot, sandbox: SandboxServer) -> None:
    sandbox.control.seed({"contacts": [{"id": str(100_000 + i), "properties": {}} for i in range(10_001)]})
    match_all = [{"filters": [{"propertyName": "hs_object_id", "operator": "GTE", "value": "100000"}]}]
    last_page = _search(client, filterGroups=match_all, limit=200, after="9800")
    assert last_page.total == 10_001
    assert last_page.paging.next.after == "10000"
    with pytest.raises(ContactsApiException) as caught:
        _search(client, filterGroups=match_all, limit=200, after=last_page.paging.next.after)
    assert caught.value.status == 400
    assert "10000" in json.loads(caught.value.body)["message"]
