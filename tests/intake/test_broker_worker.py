"""What the intake writes straight to the broker, consumed by a real `celery worker` process."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from flask.testing import FlaskClient
from intake_support import deal_stage_event, encode, post, queued_tasks

from handoff_worker.celery_app import (
    BROKER_KEY_PREFIX,
    HANDOFF_QUEUE,
    TASK_FORGET_RECORD,
    TASK_HANDOFF_CONTACT,
    TASK_HANDOFF_DEAL,
    app,
    queue_key,
)
from handoff_worker.intake.broker import TaskCall, encode_task_message
from handoff_worker.testing import start_probe_app, stop_process, wait_until

pytestmark = pytest.mark.slow

CELERY = str(Path(sys.executable).with_name("celery"))
HERE = Path(__file__).resolve().parent
RAN_KEY = "probe:ran"  # where broker_probe_tasks records each run


@pytest.fixture
def start_probe_worker(redis_url: str, tmp_path: Path) -> Iterator[Callable[[], None]]:
    processes: list[subprocess.Popen[bytes]] = []
    log_path = tmp_path / "worker.log"

    def start() -> None:
        env = {"REDIS_URL": redis_url, "PROBE_RAN_KEY": RAN_KEY}
        processes.append(start_probe_app("broker_probe_tasks", HERE, log_path, env, "--pool=solo"))

    yield start
    for process in processes:
        stop_process(process, timeout=15)


def test_real_worker_runs_every_message_the_intake_published(
    client: FlaskClient, redis_conn: redis.Redis, start_probe_worker: Callable[[], None]
) -> None:
    events = [
        deal_stage_event(301),
        deal_stage_event(302),
        deal_stage_event(301, stage="other"),  # coalesced into 301's unit
        {
            "subscriptionType": "contact.propertyChange",
            "objectId": 9,
            "propertyName": "hs_lead_status",
            "propertyValue": "UNQUALIFIED",
            "eventId": 7,
            "occurredAt": 8,
        },
        {"subscriptionType": "contact.deletion", "objectId": 10, "eventId": 9, "occurredAt": 10},
    ]
    assert post(client, encode(events)).status_code == 204
    published = {t.task_id: (t.name, t.kwargs) for t in queued_tasks(redis_conn)}
    assert len(published) == 4

    start_probe_worker()
    wait_until(lambda: redis_conn.llen(RAN_KEY) == 4, timeout=30, what="the worker to run 4 tasks")
    ran = {}
    for raw in redis_conn.lrange(RAN_KEY, 0, -1):
        entry = json.loads(raw)
        ran[entry["id"]] = (entry["task"], entry["kwargs"])
    assert ran == published
    assert {name for name, _ in ran.values()} == {TASK_HANDOFF_DEAL, TASK_HANDOFF_CONTACT, TASK_FORGET_RECORD}
    assert ran_kwargs(ran, TASK_FORGET_RECORD) == [
        {"object_type": "contacts", "object_id": "10", "merged_into": None, "event": "deletion"}
    ]
    # acks_late messages are acknowledged: nothing waits in the queue or in kombu's unacked set.
    wait_until(
        lambda: not redis_conn.hlen(f"{BROKER_KEY_PREFIX}unacked"),
        timeout=10,
        what="the messages to be acknowledged",
    )
    assert redis_conn.llen(queue_key(HANDOFF_QUEUE)) == 0


def ran_kwargs(ran: dict[str, tuple[str, dict[str, object]]], task: str) -> list[dict[str, object]]:
    return [kwargs for name, kwargs in ran.values() if name == task]


def test_messages_match_what_celery_send_task_writes(celery_app: object, redis_conn: redis.Redis) -> None:
    """Field for field the message `send_task` builds, except the values that are new per message."""
    from celery import Celery

    assert isinstance(celery_app, Celery)
    call = TaskCall.new(TASK_HANDOFF_DEAL, {"deal_id": "5", "trigger": "webhook"})
    celery_app.send_task(call.name, kwargs=call.kwargs, queue="handoff", task_id=call.task_id)
    (sent,) = [json.loads(raw) for raw in redis_conn.lrange(queue_key(HANDOFF_QUEUE), 0, -1)]
    ours = json.loads(encode_task_message(call, queue="handoff", origin=sent["headers"]["origin"]))
    for message in (sent, ours):
        del message["properties"]["delivery_tag"]  # a fresh uuid in each
        del message["properties"]["reply_to"]  # only used for results, which are ignored
        message["headers"]["ignore_result"] = bool(message["headers"]["ignore_result"])
    assert ours == sent


def test_the_real_tasks_are_registered_under_the_names_the_intake_publishes() -> None:
    import handoff_worker.tasks  # noqa: F401  # registers the tasks on the shared app

    assert {TASK_HANDOFF_DEAL, TASK_HANDOFF_CONTACT, TASK_FORGET_RECORD} <= set(app.tasks)
