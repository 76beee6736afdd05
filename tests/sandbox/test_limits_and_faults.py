"""Auth, rate limits and injected faults, seen by a plain HTTP client and by the SDK."""

from __future__ import annotations

import pytest
import requests
from hubspot import HubSpot
from hubspot.crm.contacts import ApiException as ContactsApiException

from handoff_worker.sandbox.app import create_app
from handoff_worker.sandbox.testing import SandboxServer, build_sandbox
from handoff_worker.testing import wait_until

AUTH = {"Authorization": "Bearer test-token"}


def test_missing_token_is_401(sandbox: SandboxServer) -> None:
    answer = requests.get(f"{sandbox.url}/crm/v3/objects/deals/2001", timeout=5)
    assert answer.status_code == 401
    assert answer.json()["category"] == "INVALID_AUTHENTICATION"


def test_configured_token_rejects_others(sandbox: SandboxServer) -> None:
    sandbox.control.configure(access_token="right")
    wrong = requests.get(f"{sandbox.url}/crm/v3/objects/deals/2001", headers=AUTH, timeout=5)
    right = requests.get(
        f"{sandbox.url}/crm/v3/objects/deals/2001", headers={"Authorization": "Bearer right"}, timeout=5
    )
    assert (wrong.status_code, right.status_code) == (401, 200)


def test_burst_limit_headers_and_429_body(sandbox: SandboxServer) -> None:
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


def test_daily_limit(sandbox: SandboxServer) -> None:
    sandbox.control.configure(daily_limit=1)
    first = requests.get(f"{sandbox.url}/crm/v3/objects/deals/2001", headers=AUTH, timeout=5)
    second = requests.get(f"{sandbox.url}/crm/v3/objects/deals/2001", headers=AUTH, timeout=5)
    assert first.status_code == 200
    assert (second.status_code, second.json()["policyName"]) == (429, "DAILY")


def test_search_limit_is_five_per_second_without_headers(sandbox: SandboxServer) -> None:
    url = f"{sandbox.url}/crm/v3/objects/contacts/search"
    answers = [requests.post(url, json={"limit": 1}, headers=AUTH, timeout=5) for _ in range(6)]
    assert [a.status_code for a in answers][-1] == 429
    assert answers[-1].json()["policyName"] == "SECONDLY"
    assert not any(h.startswith("X-HubSpot-RateLimit") for h in answers[0].headers)


def test_fail_next_is_deterministic_and_scoped_to_a_path(client: HubSpot, sandbox: SandboxServer) -> None:
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


def test_injected_429_share_with_retry_after(sandbox: SandboxServer) -> None:
    sandbox.control.set_faults(rate_limit_share=1.0, retry_after_s=3, path_prefixes=["/crm/v3/objects/deals"])
    limited = requests.get(f"{sandbox.url}/crm/v3/objects/deals/2001", headers=AUTH, timeout=5)
    other = requests.get(f"{sandbox.url}/crm/v3/objects/contacts/3001", headers=AUTH, timeout=5)
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "3")
    assert limited.json()["policyName"] == "TEN_SECONDLY_ROLLING"
    assert other.status_code == 200


def test_unreachable_drops_the_connection(sandbox: SandboxServer) -> None:
    sandbox.control.set_faults(unreachable=True)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{sandbox.url}/crm/v3/objects/deals/2001", headers=AUTH, timeout=5)
    sandbox.control.clear_faults()
    assert (
        requests.get(f"{sandbox.url}/crm/v3/objects/deals/2001", headers=AUTH, timeout=5).status_code == 200
    )


def test_fail_call_fails_the_nth_matching_request_with_the_given_body(sandbox: SandboxServer) -> None:
    deal = f"{sandbox.url}/crm/v3/objects/deals/2001"
    body = {"status": "error", "category": "VALIDATION_ERROR", "message": "chosen by the test"}
    sandbox.control.fail_call(2, 400, path_prefix="/crm/v3/objects/deals", method="GET", body=body)
    requests.get(f"{sandbox.url}/crm/v3/objects/contacts/3001", headers=AUTH, timeout=5)  # not counted
    answers = [requests.get(deal, headers=AUTH, timeout=5) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 400, 200]
    assert answers[1].json() == body


def test_fault_rules_add_up_and_unknown_keys_are_refused(sandbox: SandboxServer) -> None:
    sandbox.control.fail_call(1, 502, path_prefix="/crm/v3/objects/deals")
    sandbox.control.fail_call(1, 503, path_prefix="/crm/v3/objects/contacts")
    deal = requests.get(f"{sandbox.url}/crm/v3/objects/deals/2001", headers=AUTH, timeout=5)
    contact = requests.get(f"{sandbox.url}/crm/v3/objects/contacts/3001", headers=AUTH, timeout=5)
    assert (deal.status_code, contact.status_code) == (502, 503)
    with pytest.raises(RuntimeError, match=r"unknown keys \['fail_nth'\]"):
        sandbox.control.set_faults(fail_nth=[])


def test_ignored_write_answers_success_and_changes_nothing(client: HubSpot, sandbox: SandboxServer) -> None:
    sandbox.control.ignore_writes("contacts", "firstname", object_id="3001", value="Ignored", count=1)
    update = {
        "inputs": [
            {"id": "3001", "properties": {"firstname": "Ignored", "lastname": "Written"}},
            {"id": "3002", "properties": {"firstname": "Ignored"}},
        ]
    }
    before = sandbox.control.object("contacts", "3001")["properties"]["firstname"]
    answer = client.crm.contacts.batch_api.update(update)
    assert answer.status == "COMPLETE"
    assert {r.id: r.properties["firstname"] for r in answer.results} == {"3001": before, "3002": "Ignored"}
    first = sandbox.control.object("contacts", "3001")["properties"]
    assert (first["firstname"], first["lastname"]) == (before, "Written")
    assert sandbox.control.object("contacts", "3002")["properties"]["firstname"] == "Ignored"
    client.crm.contacts.batch_api.update(update)  # count spent: written now
    assert sandbox.control.object("contacts", "3001")["properties"]["firstname"] == "Ignored"


def test_rep_edits_are_never_ignored(sandbox: SandboxServer) -> None:
    sandbox.control.ignore_writes("contacts", "firstname")
    sandbox.control.rep_update("contacts", "3001", {"firstname": "By hand"})
    assert sandbox.control.object("contacts", "3001")["properties"]["firstname"] == "By hand"


def test_record_deleted_after_the_nth_matching_request(sandbox: SandboxServer) -> None:
    contact = f"{sandbox.url}/crm/v3/objects/contacts/3001"
    sandbox.control.delete_after("contacts", "3001", path_prefix="/crm/v3/objects/contacts/3001", after=2)
    assert requests.get(contact, headers=AUTH, timeout=5).status_code == 200
    assert requests.get(contact, headers=AUTH, timeout=5).status_code == 200  # answered, then deleted
    assert requests.get(contact, headers=AUTH, timeout=5).status_code == 404
    assert sandbox.control.associated_ids("deals", "2001", "contacts") == ["3002"]
    assert any(c["property"] == "deleted" and c["objectId"] == "3001" for c in sandbox.control.changes())


def test_refused_connections_fail_before_sending_until_accepted_again(sandbox: SandboxServer) -> None:
    sandbox.control.refuse_connections_after("/crm/v3/objects/deals/2001")
    assert requests.get(f"{sandbox.url}/crm/v3/objects/deals/2001", headers=AUTH, timeout=5).ok
    with pytest.raises(requests.ConnectionError, match="refused"):
        requests.get(f"{sandbox.url}/crm/v3/objects/contacts/3001", headers=AUTH, timeout=5)
    sandbox.accept_connections()
    assert requests.get(f"{sandbox.url}/crm/v3/objects/contacts/3001", headers=AUTH, timeout=5).ok
    assert [r["path"] for r in sandbox.control.requests()] == [
        "/crm/v3/objects/deals/2001",
        "/crm/v3/objects/contacts/3001",
    ]


def test_refusing_connections_needs_a_server_that_can() -> None:
    served_elsewhere = create_app(build_sandbox()).test_client()
    answer = served_elsewhere.put("/_sandbox/faults", json={"refuse_connections_after": [{"after": 1}]})
    assert answer.status_code == 400
    assert "SandboxServer" in answer.get_json()["message"]


def test_refused_connections_come_back_after_the_given_seconds(sandbox: SandboxServer) -> None:
    sandbox.control.refuse_connections_after("/crm/v3/objects/deals", seconds=0.2)
    requests.get(f"{sandbox.url}/crm/v3/objects/deals/2001", headers=AUTH, timeout=5)
    assert sandbox.refusing_connections  # from before that answer was sent

    def answers() -> bool:
        try:
            return requests.get(f"{sandbox.url}/crm/v3/objects/deals/2001", headers=AUTH, timeout=5).ok
        except requests.ConnectionError:
            return False

    # Whether it comes back, not when: the wait is generous.
    wait_until(answers, timeout=10, what="the sandbox to accept connections again", every=0.05)


def test_requests_are_recorded_with_body_and_status(client: HubSpot, sandbox: SandboxServer) -> None:
    client.crm.contacts.batch_api.read({"inputs": [{"id": "3001"}], "properties": ["email"]})
    [entry] = sandbox.control.requests("/crm/v3/objects/contacts/batch/read")
    assert entry["method"] == "POST"
    assert entry["body"] == {"inputs": [{"id": "3001"}], "properties": ["email"]}
    assert entry["status"] == 200
