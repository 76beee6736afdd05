"""The intake through a real HTTP server, and with its Redis killed mid-flight."""

from __future__ import annotations

import http.client
import socket
import subprocess
import threading
from collections.abc import Iterator

import pytest
import redis
from intake_support import RULES, deal_stage_event, encode, make_settings, queued_tasks, v3_headers
from werkzeug.serving import BaseWSGIServer, make_server

from handoff_worker.celery_app import create_celery
from handoff_worker.intake.app import create_app

OPS_PORT = 9100


@pytest.fixture
def served_app(redis_url: str) -> Iterator[BaseWSGIServer]:
    settings = make_settings(redis_url, webhook_max_body_bytes=2000)
    app = create_app(settings, rules=RULES, celery_app=create_celery(settings))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    thread.join(timeout=5)


def _post(server: BaseWSGIServer, body: bytes, headers: dict[str, str], *, chunked: bool = False) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
    try:
        if chunked:
            conn.request("POST", "/webhooks/hubspot", body=iter([body]), headers=headers, encode_chunked=True)
        else:
            conn.request("POST", "/webhooks/hubspot", body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_signed_batch_over_http(served_app: BaseWSGIServer, redis_conn: redis.Redis) -> None:
    uri = f"http://127.0.0.1:{served_app.server_port}/webhooks/hubspot"
    body = encode([deal_stage_event(1), deal_stage_event(2)])
    assert _post(served_app, body, v3_headers(body, uri=uri)) == 204
    assert sorted(t.kwargs["deal_id"] for t in queued_tasks(redis_conn)) == ["1", "2"]


def test_body_over_the_limit_without_content_length_is_413(
    served_app: BaseWSGIServer, redis_conn: redis.Redis
) -> None:
    uri = f"http://127.0.0.1:{served_app.server_port}/webhooks/hubspot"
    body = encode([deal_stage_event(i) for i in range(20)])
    assert len(body) > 2000
    assert _post(served_app, body, v3_headers(body, uri=uri), chunked=True) == 413
    assert queued_tasks(redis_conn) == []


@pytest.mark.timeout(30)
def test_redis_gone_answers_503_never_2xx(throwaway_redis: tuple[subprocess.Popen[bytes], str]) -> None:
    process, url = throwaway_redis
    settings = make_settings(url, ops_bind=f"127.0.0.1:{OPS_PORT}")
    client = create_app(settings, rules=RULES, celery_app=create_celery(settings)).test_client()
    body = encode([deal_stage_event(10)])
    assert client.post("/webhooks/hubspot", data=body, headers=v3_headers(body)).status_code == 204

    process.kill()
    process.wait(timeout=5)
    for deal_id in (11, 12):
        body = encode([deal_stage_event(deal_id)])
        response = client.post("/webhooks/hubspot", data=body, headers=v3_headers(body))
        assert response.status_code == 503
        assert "REDIS_URL" in response.get_json()["error"]
    ready = client.get("/readyz", base_url=f"http://127.0.0.1:{OPS_PORT}")
    assert ready.status_code == 503
    assert ready.get_json()["checks"]["redis"].startswith("failed")


def test_concurrent_requests_about_the_same_deals_queue_each_deal_once(
    redis_url: str, redis_conn: redis.Redis
) -> None:
    """Two app instances (two web processes) each serving requests in parallel threads, every
    request naming the same deals with events of its own: each deal is queued exactly once."""
    servers = []
    for _ in range(2):
        settings = make_settings(redis_url)
        server = make_server(
            "127.0.0.1",
            0,
            create_app(settings, rules=RULES, celery_app=create_celery(settings)),
            threaded=True,
        )
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    deal_ids = list(range(300, 360))
    bodies = [encode([deal_stage_event(d, stage=f"lost{n}") for d in deal_ids]) for n in range(24)]
    statuses: list[int] = []
    start = threading.Barrier(len(bodies))

    def deliver(n: int) -> None:
        server = servers[n % 2]
        uri = f"http://127.0.0.1:{server.server_port}/webhooks/hubspot"
        start.wait()
        statuses.append(_post(server, bodies[n], v3_headers(bodies[n], uri=uri)))

    threads = [threading.Thread(target=deliver, args=(n,)) for n in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    for server in servers:
        server.shutdown()
    assert statuses == [204] * len(bodies)
    queued = sorted(int(t.kwargs["deal_id"]) for t in queued_tasks(redis_conn))
    assert queued == deal_ids


@pytest.mark.timeout(60)
def test_a_broker_that_refuses_the_work_leaves_no_mark_behind(
    redis_url: str, redis_conn: redis.Redis
) -> None:
    """With a broker other than our Redis, marks are written first and the messages published after:
    a publish that fails answers 503 and takes its marks back, so HubSpot's retry queues the deal
    instead of finding it 'already queued' with nothing in any queue."""
    from handoff_worker.pending import pending_key

    settings = make_settings(redis_url)
    refusing = create_celery(settings)
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    closed_port = free.getsockname()[1]
    free.close()
    refusing.conf.update(
        broker_url=f"amqp://guest:guest@127.0.0.1:{closed_port}//",
        broker_transport_options={},
        broker_connection_timeout=0.5,
        task_publish_retry_policy={"max_retries": 0},
    )
    client = create_app(settings, rules=RULES, redis_client=redis_conn, celery_app=refusing).test_client()
    body = encode([deal_stage_event(77)])
    response = client.post("/webhooks/hubspot", data=body, headers=v3_headers(body))
    assert response.status_code == 503
    assert not redis_conn.exists(pending_key("deal", "77"))
    assert not redis_conn.keys("handoff:webhook:seen:*"), "the event must not look seen either"

    # HubSpot's retry, once the broker is back, queues the deal.
    working = create_app(settings, rules=RULES, celery_app=create_celery(settings)).test_client()
    retry = encode([deal_stage_event(77)])
    assert working.post("/webhooks/hubspot", data=retry, headers=v3_headers(retry)).status_code == 204
    assert [t.kwargs["deal_id"] for t in queued_tasks(redis_conn)] == ["77"]
