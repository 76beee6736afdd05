"""Messages a worker cannot run are set aside, and the worker keeps running: real `celery worker`
processes on the test's Redis, poisoned through the broker list itself."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from worker_support import Worker

from handoff_worker.celery_app import (
    BROKER_KEY_PREFIX,
    HANDOFF_QUEUE,
    TASK_HANDOFF_DEAL,
    VISIBILITY_TIMEOUT_SECONDS,
    create_celery,
    queue_key,
)
from handoff_worker.domain.models import RecordKind
from handoff_worker.handoff.audit import recent_audits
from handoff_worker.handoff.deadletter import get_failure
from handoff_worker.intake.broker import TaskCall, encode_task_message
from handoff_worker.setaside import get_set_aside, list_set_aside
from handoff_worker.settings import Settings
from handoff_worker.testing import start_probe_app, stop_process, wait_until

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
HANDOFF_WORKER = str(Path(sys.executable).with_name("handoff-worker"))
ATTEMPTS_KEY = "probe:attempts"
KILLER_MAX_RETRIES = 2  # guard_probe_tasks.kill_own_process's max_retries


def task_message(name: str, kwargs: dict[str, Any], task_id: str) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(
        encode_task_message(TaskCall(name, kwargs, task_id), queue="handoff", origin="t")
    )
    return message


def with_body(message: dict[str, Any], body: object) -> dict[str, Any]:
    return {**message, "body": base64.b64encode(json.dumps(body).encode()).decode()}


def poison() -> dict[str, bytes]:
    """Messages that are not runnable task messages, by the id each is set aside under."""
    from handoff_worker.setaside import message_id_for

    good = task_message(TASK_HANDOFF_DEAL, {"deal_id": "2002", "trigger": "webhook"}, "unused")
    raw_texts = [b"not json", b"\xff\xfe\x00", b"[1, 2]", b'{"a": 1}']
    by_id = {message_id_for(raw): raw for raw in raw_texts}
    shaped = {
        "bad-body": {**good, "body": "%%%"},
        "bad-content": {**good, "content-type": "application/x-python-serialize"},
        "no-such-task": {**good, "headers": {**good["headers"], "task": "handoff_worker.no_such_task"}},
        "bad-arguments": with_body(good, [[], {"nope": 1}, {}]),
    }
    for task_id, message in shaped.items():
        message["headers"] = {**message["headers"], "id": task_id}
        by_id[task_id] = json.dumps(message).encode()
    return by_id


def cli(redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REDIS_URL": redis_url}
    return subprocess.run([HANDOFF_WORKER, *args], env=env, capture_output=True, text=True, timeout=60)


def test_poison_messages_are_set_aside_and_the_worker_keeps_running(
    hub: Any, worker: Worker, redis_url: str, redis_conn: redis.Redis
) -> None:
    messages = poison()
    # An unexpected failure of a real handoff: an argument the task does not take.
    failing = with_body(
        task_message(TASK_HANDOFF_DEAL, {}, "failing-handoff"),
        [[], {"deal_id": "2001", "trigger": "webhook", "surprise": True}, {}],
    )
    after = task_message(TASK_HANDOFF_DEAL, {"deal_id": "2002", "trigger": "after-the-poison"}, "after")
    redis_conn.lpush(queue_key(HANDOFF_QUEUE), *messages.values(), json.dumps(failing), json.dumps(after))

    wait_until(
        lambda: any(a["trigger"] == "after-the-poison" for a in recent_audits(redis_conn)),
        what="the message queued after the poison to run",
    )
    wait_until(lambda: len(list_set_aside(redis_conn)) == len(messages), what="every poison set aside")
    assert worker.process.poll() is None, worker.output()[-3000:]
    kept = {m.message_id: m for m in list_set_aside(redis_conn)}
    assert set(kept) == set(messages)
    assert kept["no-such-task"].task == "handoff_worker.no_such_task"
    assert "no task named" in kept["no-such-task"].reason
    assert kept["bad-arguments"].kwargs == {"nope": 1} and "TypeError" in kept["bad-arguments"].reason
    assert kept["bad-body"].raw == messages["bad-body"].decode()
    dead = get_failure(redis_conn, RecordKind.DEAL, "2001")
    assert dead is not None and "TypeError" in dead.error
    assert not redis_conn.llen(queue_key(HANDOFF_QUEUE))
    wait_until(lambda: not redis_conn.hlen(f"{BROKER_KEY_PREFIX}unacked"), what="every message acknowledged")
    # Celery's keys too live under the project's prefix (the queue, kombu's bindings and bookkeeping).
    assert sorted(k for k in redis_conn.scan_iter() if not k.startswith("handoff:")) == []

    listed = cli(redis_url, "failures", "--json")
    assert listed.returncode == 0, listed.stderr
    shown = json.loads(listed.stdout)
    assert {r["message_id"] for r in shown if r["kind"] == "message"} == set(messages)
    assert [r["object_id"] for r in shown if r["kind"] == "deal"] == ["2001"]
    table = cli(redis_url, "failures").stdout
    assert "no-such-task" in table and "deal:2001" in table

    # Queued again, the unknown task is set aside again (this release still lacks it); discarded,
    # a message is gone.
    replayed = cli(redis_url, "replay", "--message", "no-such-task", "--discard-message", "bad-body")
    assert replayed.returncode == 0, replayed.stderr
    assert "message no-such-task queued again on handoff" in replayed.stdout
    wait_until(
        lambda: get_set_aside(redis_conn, "no-such-task") is not None, what="the replayed message back"
    )
    assert get_set_aside(redis_conn, "bad-body") is None


@pytest.fixture
def probe_worker(redis_url: str, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {"REDIS_URL": redis_url, "PROBE_ATTEMPTS_KEY": ATTEMPTS_KEY}
    log_path = tmp_path / "probe.log"
    process = start_probe_app("guard_probe_tasks", HERE, log_path, env, "--pool=prefork", "--concurrency=1")
    yield process
    stop_process(process, timeout=15)


def attempts(client: redis.Redis) -> list[str]:
    return [str(item) for item in client.lrange(ATTEMPTS_KEY, 0, -1)]


def test_a_message_that_keeps_killing_its_process_is_set_aside(
    probe_worker: subprocess.Popen[bytes], redis_url: str, redis_conn: redis.Redis
) -> None:
    app = create_celery(Settings.from_env({"REDIS_URL": redis_url}, dotenv_path=None))
    app.send_task("probe.kill_own_process", kwargs={"record_id": "k1"}, task_id="killer", queue="handoff")
    wait_until(
        lambda: get_set_aside(redis_conn, "killer") is not None, timeout=90, what="the killer set aside"
    )
    app.send_task("probe.record", kwargs={"record_id": "r1"}, queue="handoff")
    wait_until(lambda: "ran:r1" in attempts(redis_conn), what="the next message to run")
    app.close()

    kills = [a for a in attempts(redis_conn) if a.startswith("kill:")]
    assert kills == [f"kill:k1:{n}" for n in range(KILLER_MAX_RETRIES + 1)]
    kept = get_set_aside(redis_conn, "killer")
    assert kept is not None and "WorkerLostError" in kept.reason
    assert kept.task == "probe.kill_own_process" and kept.kwargs == {"record_id": "k1"}
    assert probe_worker.poll() is None
    assert not redis_conn.llen(queue_key(HANDOFF_QUEUE))


def test_a_task_past_its_hard_time_limit_is_set_aside(
    probe_worker: subprocess.Popen[bytes], redis_url: str, redis_conn: redis.Redis
) -> None:
    app = create_celery(Settings.from_env({"REDIS_URL": redis_url}, dotenv_path=None))
    app.send_task("probe.outlive_time_limit", kwargs={"record_id": "h1"}, task_id="hung", queue="handoff")
    wait_until(lambda: get_set_aside(redis_conn, "hung") is not None, what="the hung task set aside")
    app.close()
    kept = get_set_aside(redis_conn, "hung")
    assert kept is not None and "TimeLimitExceeded" in kept.reason
    assert probe_worker.poll() is None


def test_every_task_has_a_time_limit_that_ends_it_before_a_redelivery() -> None:
    conf = create_celery(Settings.from_env({}, dotenv_path=None)).conf
    assert conf.task_soft_time_limit < conf.task_time_limit < VISIBILITY_TIMEOUT_SECONDS
    assert conf.task_retry_on_worker_lost and conf.task_reject_on_worker_lost
    assert conf.worker_enable_remote_control is False


def test_a_tls_redis_url_keeps_tls_under_the_screening_transport() -> None:
    import ssl

    verified = create_celery(
        Settings.from_env({"REDIS_URL": "rediss://cache.example:6380/0"}, dotenv_path=None)
    )
    with verified.connection_for_write() as connection:
        assert connection.transport_cls == "handoff_worker.broker_transport:Transport"
        assert connection.ssl == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    url = "rediss://cache.example:6380/0?ssl_cert_reqs=none"
    unverified = create_celery(Settings.from_env({"REDIS_URL": url}, dotenv_path=None))
    with unverified.connection_for_write() as connection:
        assert connection.ssl == {"ssl_cert_reqs": ssl.CERT_NONE}
