"""Auth, rate limits and injected faults, seen by a plain HTTP client and by the SDK."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from hubspot import HubSpot
from hubspot.crm.contacts import ApiException as ContactsApiException

AUTH = {"Authorization": "Bearer test-token"}


def test_missing_token_is_401(sandbox: Any) -> None:
    answer = requests.get(f"{sandbox.url}/crm/v3/objects/deals/2001", timeout=5)
    assert answer.status_code == 401
    assert answer.json()["category"] == "INVALID_AUTHENTICATION"


def test_configured_token_rejects_others(sandbox: Any) -> None:
    sandbox.control.configure(access_token="right")
    wrong = requests.get(f"{sandbox.url}/crm/v3/objects/deals/2001", headers=AUTH, timeout=5)
    right = requests.get(
        f"{sandbox.url}/crm/v3/objects/deals/2001", headers={"Authorization": "Bearer right"}, timeout=5
    )
    assert (wrong.status_code, right.status_code) == (401, 200)


def test_burst_limit_headers_and_429_body(sandbox: Any) -> None:
    sandbox.control.configure(rate_limit="3/10s")
    answers = [
        requests.get(f"{sandbox.url}/crm/v3/objects/deals/2001", headers=AUTH, timeout=5) for _ in range(4)
    ]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [a.headers["X-HubSpot-RateLimit-Remaining"] for a in answers[:3]] == ["2", "1", "0"]
    assert answers[0].headers["X-HubSpot-RateLimit-Max"] == "3"
    assert answers[0].headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
    assert answers[0].headers["X-HubSpot-RateLimit-Daily"] == "500000"
    assert "X-HubSpot-RateLimit-Daily-Remaining" in answers[0].headers
    body = answers[3].json()
    assert body["policyName"] == "TEN_SECONDLY_ROLLING"
    assert body["errorType"] == "RATE_LIMIT"
    assert body["message"] == "You have reached your ten_secondly_rolling limit."
    assert "Retry-After" not in answers[3].headers


def test_daily_limit(sandbox: Any) -> None:
    sandbox.control.configure(daily_limit=1)
    first = requests.get(f"{sandbox.url}/crm/v3/objects/deals/2001", headers=AUTH, timeout=5)
    second = requests.get(f"{sandbox.url}/crm/v3/objects/deals/2001", headers=AUTH, timeout=5)
    assert first.status_code == 200
    assert (second.status_code, second.json()["policyName"]) == (429, "DAILY")


def test_search_limit_is_five_per_second_without_headers(sandbox: Any) -> None:
    url = f"{sandbox.url}/crm/v3/objects/contacts/search"
    answers = [requests.post(url, json={"limit": 1}, headers=AUTH, timeout=5) for _ in range(6)]
    assert [a.status_code for a in answers][-1] == 429
    assert answers[-1].json()["policyName"] == "SECONDLY"
    assert not any(h.startswith("X-HubSpot-RateLimit") for h in answers[0].headers)


def test_fail_next_is_deterministic_and_scoped_to_a_path(client: HubSpot, sandbox: Any) -> None:
    sandbox.control.fail_next(2, 502, path_prefix="/crm/v3/objects/contacts/batch/update")
    update = {"inputs": [{"id": "3001", "properties": {"firstname": "D"}}]}
    client.crm.deals.basic_api.get_by_id("2001")  # another path: untouched
    for _ in range(2):
        with pytest.raises(ContactsApiException) as caught:
            client.crm.contacts.batch_api.update(update)
        assert caught.value.status == 502
    assert client.crm.contacts.batch_api.update(update).status == "COMPLETE"
    statuses = [r["status"] for r in sandbox.control.requests("/crm/v3/objects/contacts/batch/update")]
    assert statuses == [502, 502, 200]


def test_injected_429_share_with_retry_after(sandbox: Any) -> None:
    sandbox.control.set_faults(rate_limit_share=1.0, retry_after_s=3, path_prefixes=["/crm/v3/objects/deals"])
    limited = requests.get(f"{sandbox.url}/crm/v3/objects/deals/2001", headers=AUTH, timeout=5)
    other = requests.get(f"{sandbox.url}/crm/v3/objects/contacts/3001", headers=AUTH, timeout=5)
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "3")
    assert limited.json()["policyName"] == "TEN_SECONDLY_ROLLING"
    assert other.status_code == 200


def test_unreachable_drops_the_connection(sandbox: Any) -> None:
    sandbox.control.set_faults(unreachable=True)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{sandbox.url}/crm/v3/objects/deals/2001", headers=AUTH, timeout=5)
    sandbox.control.clear_faults()
    assert (
        requests.get(f"{sandbox.url}/crm/v3/objects/deals/2001", headers=AUTH, timeout=5).status_code == 200
    )


def test_requests_are_recorded_with_body_and_status(client: HubSpot, sandbox: Any) -> None:
    client.crm.contacts.batch_api.read({"inputs": [{"id": "3001"}], "properties": ["email"]})
    [entry] = sandbox.control.requests("/crm/v3/objects/contacts/batch/read")
    assert entry["method"] == "POST"
    assert entry["body"] == {"inputs": [{"id": "3001"}], "properties": ["email"]}
    assert entry["status"] == 200
