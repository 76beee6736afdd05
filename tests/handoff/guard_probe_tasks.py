"""A Celery app for the worker-guard tests: the project's Celery configuration and its guards, with
tasks that misbehave on purpose (kill their own process, outlive their time limit) in ways no real
task can be made to on demand.

`celery -A guard_probe_tasks worker` (run from tests/handoff) records each attempt in the Redis
list named by PROBE_ATTEMPTS_KEY, so the test can count them.
"""

from __future__ import annotations

import os
import signal
import time

import redis
from celery import Task
from celery.exceptions import SoftTimeLimitExceeded

from handoff_worker import worker_guards  # noqa: F401  # the guards under test
from handoff_worker.celery_app import create_celery
from handoff_worker.settings import Settings

ATTEMPTS_KEY = os.environ["PROBE_ATTEMPTS_KEY"]
KILLER_MAX_RETRIES = 2

settings = Settings.from_env()
app = create_celery(settings)
app.conf.include = []
_redis = redis.Redis.from_url(settings.redis_url)


@app.task(name="probe.kill_own_process", bind=True, acks_late=True, max_retries=KILLER_MAX_RETRIES)
def kill_own_process(self: Task, record_id: str) -> None:
    _redis.rpush(ATTEMPTS_KEY, f"kill:{record_id}:{self.request.retries}")
    os.kill(os.getpid(), signal.SIGKILL)


@app.task(name="probe.outlive_time_limit", bind=True, acks_late=True, soft_time_limit=1, time_limit=2)
def outlive_time_limit(self: Task, record_id: str) -> None:
    _redis.rpush(ATTEMPTS_KEY, f"hang:{record_id}")
    try:
        time.sleep(60)
    except SoftTimeLimitExceeded:
        time.sleep(60)  # a hang the soft limit does not end: only the hard limit can


@app.task(name="probe.record", bind=True, acks_late=True)
def record(self: Task, record_id: str) -> None:
    _redis.rpush(ATTEMPTS_KEY, f"ran:{record_id}")
