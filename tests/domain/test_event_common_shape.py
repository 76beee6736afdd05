"""Events of the common shape are read in one pass; every one must read exactly as the checked
path reads it. An extra field HubSpot may add sends an event down the checked path, so the same
event with and without it must give the same result, refusals included."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from handoff_worker.domain.events import MAX_ID, parse_batch

BASE: dict[str, Any] = {
    "eventId": 11,
    "subscriptionId": 77,
    "portalId": 123,
    "appId": 4242,
    "occurredAt": 1_700_000_000_000,
    "subscriptionType": "deal.propertyChange",
    "attemptNumber": 0,
    "objectId": 501,
    "propertyName": "dealstage",
    "propertyValue": "closedlost",
    "changeSource": "CRM_UI",
}

VARIANTS: list[dict[str, Any]] = [
    {},
    {"subscriptionType": "contact.propertyChange", "propertyName": "hs_lead_status"},
    {"subscriptionType": "deal.creation"},
    {"subscriptionType": "contact.deletion"},
    {"subscriptionType": "deal.restore"},
    {"subscriptionType": "deal.merge"},
    {"subscriptionType": "ticket.creation"},
    {"subscriptionType": "object.propertyChange"},
    {"subscriptionType": ""},
    {"subscriptionType": 5},
    {"objectId": MAX_ID},
    {"objectId": MAX_ID + 1},
    {"objectId": 0},
    {"objectId": -3},
    {"objectId": "0007"},
    {"objectId": None},
    {"objectId": True},
    {"objectId": 5.0},
    {"eventId": "12"},
    {"eventId": None},
    {"portalId": 0},
    {"occurredAt": 0},
    {"occurredAt": -1},
    {"occurredAt": "1700000000000"},
    {"attemptNumber": None},
    {"attemptNumber": 3},
    {"attemptNumber": False},
    {"propertyValue": None},
    {"propertyValue": ""},
    {"propertyValue": 12},
    {"propertyValue": True},
    {"propertyValue": ["x"]},
    {"propertyName": None},
    {"propertyName": 3},
    {"changeSource": "INTEGRATION", "sourceId": "4242"},
    {"sourceId": 4242},
    {"changeFlag": "UPDATED"},
]


def _outcome(event: dict[str, Any]) -> tuple[object, ...]:
    batch = parse_batch([event])
    return batch.events, tuple((e.reason, e.field_name, str(e)) for e in batch.refused)


@pytest.mark.parametrize(
    "changes", [dict(itertools.chain(a.items(), b.items())) for a in VARIANTS for b in VARIANTS[:12]]
)
def test_the_common_shape_reads_as_the_checked_path_does(changes: dict[str, Any]) -> None:
    event = {**BASE, **changes}
    checked = {**event, "aFieldHubSpotMightAdd": 1}
    assert _outcome(event) == _outcome(checked)


def test_missing_fields_read_the_same_way() -> None:
    for name in BASE:
        event = {k: v for k, v in BASE.items() if k != name}
        assert _outcome(event) == _outcome({**event, "aFieldHubSpotMightAdd": 1}), name
