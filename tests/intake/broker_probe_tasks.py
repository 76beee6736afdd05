"""A Celery app for one test: the project's own Celery configuration, with stand-in tasks under the
real task names that only record what they were called with.

`celery -A broker_probe_tasks worker` (run from tests/intake) then proves that the messages the
intake writes straight to the broker are consumed, decoded and acknowledged by a real worker,
without needing HubSpot for the real tasks.
"""

from __future__ import annotations

import json
import os
from typing import Any

import redis
from celery import Task

from handoff_worker.celery_app import (
    TASK_FORGET_RECORD,
    TASK_HANDOFF_CONTACT,
    TASK_HANDOFF_DEAL,
    create_celery,
)
from handoff_worker.settings import Settings

# The Redis list the test reads; it passes the name so both sides agree.
RAN_KEY = os.environ["PROBE_RAN_KEY"]

settings = Settings.from_env()
app = create_celery(settings)
app.conf.include = []  # the real tasks need HubSpot; these stand-ins take their names
_redis = redis.Redis.from_url(settings.redis_url)


def _record(task: Task, kwargs: dict[str, Any]) -> None:
    entry = {"task": task.name, "id": task.request.id, "kwargs": kwargs}
    _redis.rpush(RAN_KEY, json.dumps(entry, sort_keys=True))


@app.task(name=TASK_HANDOFF_DEAL, bind=True, acks_late=True, ignore_result=True, shared=False)
def handoff_deal(self: Task, deal_id: str, trigger: str = "") -> None:
    _record(self, {"deal_id": deal_id, "trigger": trigger})


@app.task(name=TASK_HANDOFF_CONTACT, bind=True, acks_late=True, ignore_result=True, shared=False)
def handoff_contact(self: Task, contact_id: str, trigger: str = "") -> None:
    _record(self, {"contact_id": contact_id, "trigger": trigger})


@app.task(name=TASK_FORGET_RECORD, bind=True, acks_late=True, ignore_result=True, shared=False)
def forget_record(
    self: Task, object_type: str, object_id: str, merged_into: str | None = None, event: str = ""
) -> None:
    kwargs = {"object_type": object_type, "object_id": object_id, "merged_into": merged_into, "event": event}
    _record(self, kwargs)
