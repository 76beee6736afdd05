"""The webhook endpoint over the real Flask app, real Redis and the real Celery broker queue."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient
from hubspot.utils.signature import Signature
from intake_support import (
    APP_ID,
    RULES,
    SECRET,
    deal_stage_event,
    encode,
    make_settings,
    now_ms,
    post,
    queued_tasks,
    v3_headers,
)

from handoff_worker.celery_app import TASK_FORGET_RECORD, TASK_HANDOFF_CONTACT, TASK_HANDOFF_DEAL
from handoff_worker.intake.app import create_app
from handoff_worker.pending import finish_running, pending_key, pending_mark, start_running

OPS_PORT = 9100
OPS_URL = f"http://127.0.0.1:{OPS_PORT}"


def test_lost_deal_stage_change_enqueues_one_deal_handoff(
    client: FlaskClient, redis_conn: redis.Redis
) -> None:
    response = post(client, encode([deal_stage_event(501)]))
    assert response.status_code == 204
    (task,) = queued_tasks(redis_conn)
    assert task.name == TASK_HANDOFF_DEAL
    assert task.kwargs == {"deal_id": "501", "trigger": "webhook"}
    assert redis_conn.exists(pending_key("deal", "501"))


def test_contact_and_forget_units_carry_their_kwargs(client: FlaskClient, redis_conn: redis.Redis) -> None:
    events = [
        {
            "subscriptionType": "contact.propertyChange",
            "objectId": 8,
            "propertyName": "hs_lead_status",
            "propertyValue": "UNQUALIFIED",
            "eventId": 1,
            "occurredAt": 5,
        },
        {
            "subscriptionType": "deal.merge",
            "objectId": 20,
            "primaryObjectId": 20,
            "mergedObjectIds": [21],
            "eventId": 2,
            "occurredAt": 6,
        },
    ]
    assert post(client, encode(events)).status_code == 204
    tasks = {(t.name, json.dumps(t.kwargs, sort_keys=True)) for t in queued_tasks(redis_conn)}
    assert tasks == {
        (TASK_HANDOFF_CONTACT, json.dumps({"contact_id": "8", "trigger": "webhook"}, sort_keys=True)),
        (
            TASK_FORGET_RECORD,
            json.dumps(
                {"object_type": "deals", "object_id": "21", "merged_into": "20", "event": "merge"},
                sort_keys=True,
            ),
        ),
        (TASK_HANDOFF_DEAL, json.dumps({"deal_id": "20", "trigger": "webhook"}, sort_keys=True)),
    }


# --- rejections -------------------------------------------------------------------------------


def _bad_headers(kind: str, body: bytes) -> dict[str, str]:
    good = v3_headers(body)
    match kind:
        case "missing":
            return {"Content-Type": "application/json"}
        case "wrong":
            return v3_headers(body, secret="not-the-secret")
        case "stale":
            return v3_headers(body, timestamp=str(int(now_ms()) - 5 * 60 * 1000 - 5000))
        case "future":
            return v3_headers(body, timestamp=str(int(now_ms()) + 65_000))
        case "tampered":
            return {**good, "X-HubSpot-Request-Timestamp": str(int(good["X-HubSpot-Request-Timestamp"]) + 1)}
    raise AssertionError(kind)


@pytest.mark.parametrize(
    ("kind", "reason", "setting"),
    [
        ("missing", "missing_signature", None),
        ("wrong", "signature_mismatch", "HUBSPOT_CLIENT_SECRET"),
        ("stale", "stale_timestamp", None),
        ("future", "future_timestamp", None),
        ("tampered", "signature_mismatch", "WEBHOOK_PUBLIC_URL"),
    ],
)
def test_bad_signatures_get_401_and_one_log_line(
    client: FlaskClient,
    redis_conn: redis.Redis,
    caplog: pytest.LogCaptureFixture,
    kind: str,
    reason: str,
    setting: str | None,
) -> None:
    body = encode([deal_stage_event(1)])
    headers = _bad_headers(kind, body)
    with caplog.at_level(logging.INFO, logger="handoff_worker.intake"):
        response = post(client, body, headers)
    assert response.status_code == 401
    assert queued_tasks(redis_conn) == []
    (record,) = [r for r in caplog.records if r.name == "handoff_worker.intake"]
    assert record.fields["outcome"] == reason  # type: ignore[attr-defined]  # added through logging's `extra`
    text = record.getMessage()
    if setting:
        assert setting in text
    assert SECRET not in text
    for value in headers.values():
        if value != "application/json":
            assert value not in text


def test_v1_refused_unless_enabled(
    make_app: Any, redis_conn: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    body = encode([deal_stage_event(3)])
    legacy = {
        "Content-Type": "application/json",
        "X-HubSpot-Signature": Signature.get_signature(SECRET, body.decode(), "v1"),
        "X-HubSpot-Signature-Version": "v1",
    }
    with caplog.at_level(logging.INFO, logger="handoff_worker.intake"):
        refused = post(make_app().test_client(), body, legacy)
    assert refused.status_code == 401
    assert "HUBSPOT_SIGNATURE_VERSIONS" in caplog.records[-1].getMessage()
    assert queued_tasks(redis_conn) == []
    allowed = post(make_app(signature_versions=("v3", "v1")).test_client(), body, legacy)
    assert allowed.status_code == 204
    assert len(queued_tasks(redis_conn)) == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"subscriptionType": "deal.creation"}', "array of events"),
        (b"[" * 100_000 + b"]" * 100_000, "too deeply"),
    ],
)
def test_bad_payloads_get_400_with_a_short_reason(
    client: FlaskClient, redis_conn: redis.Redis, body: bytes, message: str
) -> None:
    response = post(client, body)
    assert response.status_code == 400
    assert message in response.get_json()["error"]
    assert queued_tasks(redis_conn) == []


def test_too_big_by_content_length_gets_413(make_app: Any, redis_conn: redis.Redis) -> None:
    client = make_app(webhook_max_body_bytes=200).test_client()
    body = encode([deal_stage_event(i) for i in range(5)])
    response = post(client, body)
    assert response.status_code == 413
    assert response.get_json()["error"] == "body over the limit of 200 bytes"
    assert queued_tasks(redis_conn) == []


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_wrong_content_type_gets_415(
    client: FlaskClient, redis_conn: redis.Redis, content_type: str | None
) -> None:
    body = encode([deal_stage_event(4)])
    headers = v3_headers(body)
    if content_type is None:
        del headers["Content-Type"]
    else:
        headers["Content-Type"] = content_type
    assert post(client, body, headers).status_code == 415
    assert queued_tasks(redis_conn) == []


def test_other_methods_and_paths_answer_json_not_tracebacks(client: FlaskClient) -> None:
    assert client.get("/webhooks/hubspot").status_code == 405
    missing = client.get("/nope")
    assert missing.status_code == 404
    assert "error" in missing.get_json()


# --- where the signed URL comes from ------------------------------------------------------------


def test_secret_rotation_accepts_old_and_new(make_app: Any, redis_conn: redis.Redis) -> None:
    client = make_app(hubspot_client_secrets=("new-secret", SECRET)).test_client()
    for deal_id, secret in ((1, SECRET), (2, "new-secret")):
        body = encode([deal_stage_event(deal_id)])
        assert post(client, body, v3_headers(body, secret=secret)).status_code == 204
    assert post(client, b"[]", v3_headers(b"[]", secret="retired")).status_code == 401
    assert sorted(t.kwargs["deal_id"] for t in queued_tasks(redis_conn)) == ["1", "2"]


def test_public_url_setting_is_the_signed_uri(
    make_app: Any, redis_conn: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    public = "https://handoff.example.com/hooks/hubspot"
    client = make_app(webhook_public_url=public).test_client()
    body = encode([deal_stage_event(11)])
    ok = client.post(
        "/webhooks/hubspot?portal=1", data=body, headers=v3_headers(body, uri=public + "?portal=1")
    )
    assert ok.status_code == 204
    with caplog.at_level(logging.INFO, logger="handoff_worker.intake"):
        local = client.post("/webhooks/hubspot", data=body, headers=v3_headers(body))
    assert local.status_code == 401
    assert "WEBHOOK_PUBLIC_URL" in caplog.records[-1].getMessage()


def test_forwarded_headers_trusted_only_with_trusted_proxy_count(
    make_app: Any, redis_conn: redis.Redis
) -> None:
    body = encode([deal_stage_event(12)])
    public = "https://hooks.example.org/webhooks/hubspot"
    forwarded = {
        **v3_headers(body, uri=public),
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "hooks.example.org",
    }
    untrusted = make_app().test_client().post("/webhooks/hubspot", data=body, headers=forwarded)
    assert untrusted.status_code == 401
    trusted = (
        make_app(trusted_proxy_count=1).test_client().post("/webhooks/hubspot", data=body, headers=forwarded)
    )
    assert trusted.status_code == 204
    assert [t.kwargs["deal_id"] for t in queued_tasks(redis_conn)] == ["12"]


# --- exactly once -------------------------------------------------------------------------------


def test_retried_delivery_is_acknowledged_without_new_work(
    client: FlaskClient, redis_conn: redis.Redis
) -> None:
    event = deal_stage_event(30)
    assert post(client, encode([event])).status_code == 204
    (task,) = queued_tasks(redis_conn)
    task_ran(redis_conn, "deal", "30", task.task_id)  # only the dedupe key can stop a repeat now
    retry = {**event, "attemptNumber": 1}
    assert post(client, encode([retry])).status_code == 204
    assert len(queued_tasks(redis_conn)) == 1


def test_dedupe_holds_across_two_app_instances(redis_url: str, redis_conn: redis.Redis) -> None:
    from handoff_worker.celery_app import create_celery

    def instance() -> FlaskClient:
        settings = make_settings(redis_url)
        return create_app(settings, rules=RULES, celery_app=create_celery(settings)).test_client()

    first, second = instance(), instance()
    events = [deal_stage_event(40), deal_stage_event(41)]
    assert post(first, encode(events)).status_code == 204
    for task in queued_tasks(redis_conn):
        task_ran(redis_conn, "deal", task.kwargs["deal_id"], task.task_id)
    assert post(second, encode([{**e, "attemptNumber": 2} for e in events])).status_code == 204
    assert sorted(t.kwargs["deal_id"] for t in queued_tasks(redis_conn)) == ["40", "41"]


def test_duplicates_inside_one_batch_count_once(client: FlaskClient, redis_conn: redis.Redis) -> None:
    event = deal_stage_event(31)
    assert post(client, encode([event, event, {**event, "attemptNumber": 1}])).status_code == 204
    assert len(queued_tasks(redis_conn)) == 1


def test_own_writes_are_acknowledged_and_dropped(client: FlaskClient, redis_conn: redis.Redis) -> None:
    own = deal_stage_event(50, changeSource="INTEGRATION", sourceId=APP_ID)
    someone_else = deal_stage_event(51, changeSource="INTEGRATION", sourceId="999")
    assert post(client, encode([own, someone_else])).status_code == 204
    assert [t.kwargs["deal_id"] for t in queued_tasks(redis_conn)] == ["51"]


def test_unknown_and_irrelevant_types_are_acknowledged(client: FlaskClient, redis_conn: redis.Redis) -> None:
    events = [
        {"subscriptionType": "ticket.creation", "objectId": 1},
        {"subscriptionType": "deal.brandNewThing", "whatever": [1, 2]},
        deal_stage_event(60, propertyName="amount"),
    ]
    assert post(client, encode(events)).status_code == 204
    assert queued_tasks(redis_conn) == []


def test_burst_of_1000_events_about_10_deals_is_10_units(
    client: FlaskClient, redis_conn: redis.Redis
) -> None:
    events = [deal_stage_event(700 + i % 10, stage=f"s{i}") for i in range(1000)]
    for start in range(0, 1000, 100):
        assert post(client, encode(events[start : start + 100])).status_code == 204
    tasks = queued_tasks(redis_conn)
    assert sorted(t.kwargs["deal_id"] for t in tasks) == [str(700 + i) for i in range(10)]
    # Every event is remembered, so none of them queues work again when HubSpot retries it.
    assert len(redis_conn.keys("handoff:webhook:seen:*")) == 1000


def test_releasing_the_pending_mark_lets_the_next_event_enqueue(
    client: FlaskClient, redis_conn: redis.Redis
) -> None:
    assert post(client, encode([deal_stage_event(80)])).status_code == 204
    assert post(client, encode([deal_stage_event(80, stage="other")])).status_code == 204
    (first,) = queued_tasks(redis_conn)
    start_running(redis_conn, "deal", "80", task_id=first.task_id)
    # The task has started reading HubSpot: a new event cannot reach it and queues its own unit.
    assert post(client, encode([deal_stage_event(80, stage="third")])).status_code == 204
    first_again, second = queued_tasks(redis_conn)
    assert [t.kwargs["deal_id"] for t in (first_again, second)] == ["80", "80"]
    assert pending_mark(redis_conn, "deal", "80") == f"q:live:{second.task_id}"
    # The first task ends: the second's mark stays, so further events still coalesce into it.
    finish_running(redis_conn, "deal", "80", task_id=first.task_id)
    assert pending_mark(redis_conn, "deal", "80") == f"q:live:{second.task_id}"
    assert post(client, encode([deal_stage_event(80, stage="fourth")])).status_code == 204
    assert len(queued_tasks(redis_conn)) == 2


def test_a_task_leaves_a_newer_units_queued_mark_alone(redis_conn: redis.Redis) -> None:
    redis_conn.set(pending_key("deal", "90"), "q:live:task-b")
    start_running(redis_conn, "deal", "90", task_id="task-a")  # an older copy, e.g. a retry
    finish_running(redis_conn, "deal", "90", task_id="task-a")
    assert pending_mark(redis_conn, "deal", "90") == "q:live:task-b"
    start_running(redis_conn, "deal", "90", task_id="task-b")
    assert pending_mark(redis_conn, "deal", "90") == "r:task-b"
    finish_running(redis_conn, "deal", "90", task_id="task-b")
    assert pending_mark(redis_conn, "deal", "90") is None


def task_ran(redis_conn: redis.Redis, kind: str, object_id: str, task_id: str) -> None:
    """What a worker's task does to the record's mark, start to end."""
    start_running(redis_conn, kind, object_id, task_id=task_id)
    finish_running(redis_conn, kind, object_id, task_id=task_id)


def test_pending_kind_is_checked() -> None:
    with pytest.raises(ValueError, match="deals"):
        pending_key("deals", "1")


# --- health, readiness, metrics, logs -----------------------------------------------------------


def test_health_and_readiness(make_app: Any) -> None:
    client = make_app(ops_bind=f"127.0.0.1:{OPS_PORT}").test_client()
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz", base_url=OPS_URL)
    assert ready.status_code == 200
    assert ready.get_json()["checks"]["redis"] == "ok"
    assert ready.get_json()["checks"]["broker"] == "ok"


def test_metrics_count_what_happened(make_app: Any, redis_conn: redis.Redis) -> None:
    client = make_app(ops_bind=f"127.0.0.1:{OPS_PORT}").test_client()

    def sample(name: str) -> float:
        text = client.get("/metrics", base_url=OPS_URL).get_data(as_text=True)
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return 0.0

    before = {
        n: sample(n)
        for n in ("handoff_intake_own_write_events_total", "handoff_intake_duplicate_events_total")
    }
    own = deal_stage_event(95, changeSource="INTEGRATION", sourceId=APP_ID)
    event = deal_stage_event(96)
    post(client, encode([own, event]))
    post(client, encode([event]))
    assert (
        sample("handoff_intake_own_write_events_total") == before["handoff_intake_own_write_events_total"] + 1
    )
    assert (
        sample("handoff_intake_duplicate_events_total") == before["handoff_intake_duplicate_events_total"] + 1
    )


def test_one_json_log_line_per_request_without_personal_data(
    client: FlaskClient, redis_conn: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    from handoff_worker.intake.logs import JsonFormatter

    event = {
        "subscriptionType": "contact.propertyChange",
        "objectId": 5,
        "propertyName": "dq_reason",
        "propertyValue": "jane.doe@example.com",
    }
    with caplog.at_level(logging.INFO, logger="handoff_worker.intake"):
        assert post(client, encode([event])).status_code == 204
    (record,) = [r for r in caplog.records if r.name == "handoff_worker.intake"]
    line = json.loads(JsonFormatter().format(record))
    assert line["status"] == 204
    assert line["events"] == 1
    assert line["units_enqueued"] == 1
    assert line["outcome"] == "accepted"
    assert "jane.doe" not in json.dumps(line)
