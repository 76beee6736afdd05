"""Hostile input at the webhook endpoint, in process: each case once gave a 500, lost good events,
queued a record under a second spelling, or told an anonymous caller too much."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient
from intake_support import (
    deal_stage_event,
    encode,
    make_settings,
    now_ms,
    post,
    queued_tasks,
    v3_headers,
)

from handoff_worker.celery_app import create_celery
from handoff_worker.domain.nurture import NurtureRules
from handoff_worker.intake.app import create_app
from handoff_worker.intake.signature import V3_TIMESTAMP_HEADER

OPS_PORT = 9100
OPS_URL = f"http://127.0.0.1:{OPS_PORT}"


def _sample(client: FlaskClient, name: str, **labels: str) -> float:
    text = client.get("/metrics", base_url=OPS_URL).get_data(as_text=True)
    wanted = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "")
    for line in text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.split()[1])
    return 0.0


@pytest.fixture
def ops_client(make_app: Any) -> FlaskClient:
    return make_app(ops_bind=f"127.0.0.1:{OPS_PORT}").test_client()


def _intake_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "handoff_worker.intake"]


# --- signatures and what a refused caller is told ------------------------------------------------


@pytest.mark.parametrize(
    "timestamp",
    ["\u00b2", "\u0661\u0662\u0663", "1" * 5000, "9" * 20, "\uff11\uff17\uff10\uff10"],
    ids=["superscript", "arabic-indic", "5000-digits", "20-digits", "fullwidth"],
)
def test_odd_timestamp_headers_are_a_401_not_a_500(
    client: FlaskClient, redis_conn: redis.Redis, caplog: pytest.LogCaptureFixture, timestamp: str
) -> None:
    body = encode([deal_stage_event(1)])
    headers = {**v3_headers(body), V3_TIMESTAMP_HEADER: timestamp}
    with caplog.at_level(logging.INFO, logger="handoff_worker.intake"):
        response = client.post("/webhooks/hubspot", data=body, headers=headers)
    assert response.status_code == 401
    assert queued_tasks(redis_conn) == []
    (line,) = _intake_lines(caplog)
    assert line.fields["outcome"] == "bad_timestamp"  # type: ignore[attr-defined]
    assert not line.exc_info


@pytest.mark.parametrize("kind", ["missing", "wrong", "stale", "future", "garbage", "no_timestamp"])
def test_a_401_tells_the_caller_no_setting_and_no_clock(
    client: FlaskClient, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    body = encode([deal_stage_event(2)])
    headers = {
        "missing": {"Content-Type": "application/json"},
        "wrong": v3_headers(body, secret="not-the-secret"),
        "stale": v3_headers(body, timestamp=str(int(now_ms()) - 3_600_000)),
        "future": v3_headers(body, timestamp=str(int(now_ms()) + 3_600_000)),
        "garbage": {**v3_headers(body), "X-HubSpot-Signature-v3": "%%%"},
        "no_timestamp": {k: v for k, v in v3_headers(body).items() if k != V3_TIMESTAMP_HEADER},
    }[kind]
    with caplog.at_level(logging.INFO, logger="handoff_worker.intake"):
        response = client.post("/webhooks/hubspot", data=body, headers=headers)
    assert response.status_code == 401
    assert response.get_json() == {"error": "signature check failed"}
    # The operator still gets the cause.
    (line,) = _intake_lines(caplog)
    assert line.getMessage().startswith("webhook refused, signature check failed: ")
    assert len(line.getMessage()) > len("webhook refused, signature check failed: ") + 10


# --- one bad event never costs the batch ---------------------------------------------------------


def test_a_lone_surrogate_in_a_value_does_not_lose_the_batch(
    client: FlaskClient, redis_conn: redis.Redis
) -> None:
    cut = {
        "subscriptionType": "contact.propertyChange",
        "objectId": 31,
        "propertyName": "dq_reason",
        "propertyValue": "Budget \ud83d",
        "occurredAt": 1_700_000_000_000,
    }
    body = json.dumps([deal_stage_event(30), cut, deal_stage_event(32)]).encode()
    assert b"\\ud83d" in body  # a lone surrogate escape, as a cut string arrives
    assert post(client, body).status_code == 204
    queued = {(t.name.rsplit(".", 1)[-1], next(iter(t.kwargs.values()))) for t in queued_tasks(redis_conn)}
    assert queued == {("handoff_deal", "30"), ("handoff_contact", "31"), ("handoff_deal", "32")}
    # The same delivery again is recognised as a duplicate.
    assert post(client, body).status_code == 204
    assert len(queued_tasks(redis_conn)) == 3


def test_bad_events_are_refused_one_by_one_and_the_good_ones_queued(
    ops_client: FlaskClient, redis_conn: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    before = _sample(ops_client, "handoff_intake_refused_events_total", reason="bad_id")
    bad_ids = ["\u0661\u0662\u0663", -4, 0, "jane.doe@example.com", 2**64, 4.5]
    events = (
        [deal_stage_event(40)]
        + [deal_stage_event(1, objectId=bad) for bad in bad_ids]
        + [deal_stage_event(41)]
    )
    with caplog.at_level(logging.INFO, logger="handoff_worker.intake"):
        response = post(ops_client, encode(events))
    assert response.status_code == 204
    assert sorted(t.kwargs["deal_id"] for t in queued_tasks(redis_conn)) == ["40", "41"]
    assert _sample(ops_client, "handoff_intake_refused_events_total", reason="bad_id") == before + len(
        bad_ids
    )
    (line,) = _intake_lines(caplog)
    assert line.levelname == "WARNING"
    assert line.fields["refused_events"] == len(bad_ids)  # type: ignore[attr-defined]
    assert line.fields["refusals"][0] == (  # type: ignore[attr-defined]
        "event [1] field 'objectId': must be a numeric id from 1 to 2^63-1, "
        "got a string that is not ASCII digits"
    )
    assert "jane" not in json.dumps(line.fields)  # type: ignore[attr-defined]


def test_two_spellings_of_one_id_are_one_unit_of_work(client: FlaskClient, redis_conn: redis.Redis) -> None:
    events = [deal_stage_event(7), deal_stage_event(1, objectId="0007"), deal_stage_event(1, objectId="7")]
    assert post(client, encode(events)).status_code == 204
    assert [t.kwargs["deal_id"] for t in queued_tasks(redis_conn)] == ["7"]


def test_an_integer_too_long_to_read_refuses_only_its_event(
    client: FlaskClient, redis_conn: redis.Redis
) -> None:
    good = encode([deal_stage_event(50)])[1:-1]
    bad = encode([deal_stage_event(51)])[1:-1].replace(b'"objectId": 51', b'"objectId": ' + b"7" * 5000)
    assert b"7" * 5000 in bad
    assert post(client, b"[" + good + b"," + bad + b"]").status_code == 204
    assert [t.kwargs["deal_id"] for t in queued_tasks(redis_conn)] == ["50"]


def test_nesting_deeper_than_python_can_read_is_a_400(client: FlaskClient, redis_conn: redis.Redis) -> None:
    body = b'[{"a":' * 50_000 + b"1" + b"}" * 50_000 + b"]"
    response = post(client, body)
    assert response.status_code == 400
    assert "too deeply" in response.get_json()["error"]
    assert queued_tasks(redis_conn) == []


# --- unexpected errors are counted ---------------------------------------------------------------


def test_an_unexpected_error_is_a_counted_500(redis_url: str, make_app: Any) -> None:
    def rules_that_fail() -> NurtureRules:
        raise RuntimeError("the rules store broke")

    settings = make_settings(redis_url, ops_bind=f"127.0.0.1:{OPS_PORT}")
    client = create_app(settings, rules=rules_that_fail, celery_app=create_celery(settings)).test_client()
    before = _sample(client, "handoff_intake_requests_total", status="500")
    errors_before = _sample(client, "handoff_intake_unexpected_errors_total", endpoint="hubspot_webhook")
    response = post(client, encode([deal_stage_event(60)]))
    assert response.status_code == 500
    assert response.get_json() == {"error": "internal error; the request can be retried"}
    assert _sample(client, "handoff_intake_requests_total", status="500") == before + 1
    assert (
        _sample(client, "handoff_intake_unexpected_errors_total", endpoint="hubspot_webhook")
        == errors_before + 1
    )


# --- where /readyz and /metrics answer -----------------------------------------------------------


@pytest.mark.parametrize("path", ["/readyz", "/metrics"])
def test_ops_endpoints_answer_only_on_the_ops_listener(make_app: Any, path: str) -> None:
    client = make_app(ops_bind=f"127.0.0.1:{OPS_PORT}", trusted_proxy_count=1).test_client()
    assert client.get(path, base_url=OPS_URL).status_code == 200
    assert client.get(path).status_code == 404
    assert client.get(path, base_url="http://127.0.0.1:8000").status_code == 404
    # A forwarded port, even from a trusted proxy, does not make the public listener the ops one.
    spoofed = client.get(path, base_url="http://127.0.0.1:8000", headers={"X-Forwarded-Port": str(OPS_PORT)})
    assert spoofed.status_code == 404
    assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize("path", ["/readyz", "/metrics"])
def test_without_ops_bind_the_ops_endpoints_answer_nowhere(client: FlaskClient, path: str) -> None:
    assert client.get(path).status_code == 404
    assert client.get(path, base_url=OPS_URL).status_code == 404


# --- the signed URL ------------------------------------------------------------------------------


def test_a_public_url_with_a_query_is_signed_as_called(make_app: Any, redis_conn: redis.Redis) -> None:
    public = "https://handoff.example.com/hooks/hubspot?source=hubspot&portal=1"
    client = make_app(webhook_public_url=public).test_client()
    body = encode([deal_stage_event(70)])
    response = client.post(
        "/webhooks/hubspot?source=hubspot&portal=1", data=body, headers=v3_headers(body, uri=public)
    )
    assert response.status_code == 204
    assert [t.kwargs["deal_id"] for t in queued_tasks(redis_conn)] == ["70"]
