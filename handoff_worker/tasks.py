"""Thin Celery tasks: wire settings, Redis, the gateway and the rules to the handoff engine.

Only ids and small dicts cross the queue. Each worker process builds its wiring once, lazily, on
its first task (`wiring.process_wiring`; redis-py opens fresh connections after the fork, so none
is shared between processes). Before any task, the worker's main process checks that the wiring can
be built at all (`worker_guards.check_worker`) and exits with one line when it cannot, instead of
acknowledging tasks it cannot run.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from datetime import UTC, datetime
from typing import Any, NoReturn

import redis
from celery import Task, signals
from celery.exceptions import Reject

from handoff_worker import worker_guards
from handoff_worker.celery_app import (
    BULK_QUEUE,
    HANDOFF_QUEUE,
    TASK_FORGET_RECORD,
    TASK_HANDOFF_CONTACT,
    TASK_HANDOFF_DEAL,
    app,
)
from handoff_worker.domain.models import RecordKind, WorkClass
from handoff_worker.errors import DailyReserveReachedError, PermanentHubSpotError, TransientHubSpotError
from handoff_worker.handoff.deadletter import record_failure
from handoff_worker.handoff.lock import LockBusyError
from handoff_worker.hubspot.ratelimit import DAILY_RESERVE_RECHECK_SECONDS, work_class
from handoff_worker.pending import finish_running, requeue_bulk, start_running
from handoff_worker.wiring import process_wiring

log = logging.getLogger(__name__)

# 8 retries, doubling from 30 s and capped at 20 min: about an hour in all before the dead letter.
# The cap also bounds a server's Retry-After: a countdown longer than the broker's visibility
# timeout (celery_app.VISIBILITY_TIMEOUT_SECONDS) would have the message delivered twice.
MAX_RETRIES = 8
BACKOFF_BASE_SECONDS = 30.0
BACKOFF_CAP_SECONDS = 1200.0
# While the broker (our Redis) is down, how long a task waits to hand its retry over, and how often
# it tries.
BROKER_OUTAGE_WAIT_SECONDS = 120.0
BROKER_OUTAGE_POLL_SECONDS = 2.0
# Another worker holds the record: come back soon; this does not count against MAX_RETRIES.
LOCK_BUSY_COUNTDOWN_SECONDS = 3.0


@signals.worker_init.connect
def _check_before_taking_tasks(**_: Any) -> None:
    worker_guards.check_worker()


def backoff_seconds(retries: int) -> float:
    """Exponential with full jitter on the upper half, so a burst of failures spreads out."""
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**retries)
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def retry_countdown(exc: TransientHubSpotError, retries: int) -> float:
    """HubSpot's Retry-After when it sent one, else our backoff; never past BACKOFF_CAP_SECONDS."""
    return min(exc.retry_after or backoff_seconds(retries), BACKOFF_CAP_SECONDS)


def _retry(task: Task, exc: Exception, countdown: float) -> NoReturn:
    """Schedule the retry, never losing the message on the way.

    The broker is the same Redis as our state: when it is down, Celery cannot publish the retry and
    would drop the message it holds (`Reject(requeue=False)`). So wait for the broker (bounded),
    and past that hand the message back (`requeue=True`): if even that fails, the broker still has
    it as unacknowledged and redelivers it after the visibility timeout.
    """
    deadline = time.monotonic() + BROKER_OUTAGE_WAIT_SECONDS
    while True:
        try:
            raise task.retry(exc=exc, countdown=countdown, max_retries=MAX_RETRIES) from exc
        except Reject as refused:
            if time.monotonic() >= deadline:
                raise Reject(refused.reason, requeue=True) from exc
            log.warning("the broker cannot take the retry yet (%s); waiting for it", refused.reason)
            time.sleep(BROKER_OUTAGE_POLL_SECONDS)


def _dead_letter(
    task: Task, kind: RecordKind, object_id: str, trigger: str, error: str, *, permanent: bool
) -> None:
    record_failure(
        process_wiring().redis,
        kind,
        object_id,
        error=error,
        attempts=task.request.retries + 1,
        now=datetime.now(UTC),
        trigger=trigger,
        permanent=permanent,
    )


def queue_of(task: Task) -> str:
    """The queue the task's message came from (retries and requeues go back to it)."""
    delivery = task.request.delivery_info or {}
    return str(delivery.get("routing_key") or HANDOFF_QUEUE)


def _run_handoff(task: Task, kind: RecordKind, object_id: str, trigger: str) -> dict[str, Any]:
    wired = process_wiring()
    queue = queue_of(task)
    # Handoffs from the bulk queue draw on the budget as bulk work: a share of it while live work
    # runs, and nothing of the daily reserve.
    work = WorkClass.BULK if queue == BULK_QUEUE else WorkClass.LIVE
    try:
        # First, before HubSpot is read: an event arriving from now on queues a fresh unit of work.
        start_running(wired.redis, kind, object_id, task_id=task.request.id)
        try:
            with work_class(work):
                run = wired.engine.handoff(kind, object_id, trigger)
        finally:
            # Should Redis fail here, the running mark expires (pending.PENDING_TTL_SECONDS).
            with contextlib.suppress(redis.RedisError):
                finish_running(wired.redis, kind, object_id, task_id=task.request.id)
    except LockBusyError:
        # A new message rather than a retry: waiting for a colleague is not a failure.
        try:
            task.apply_async(args=(object_id, trigger), countdown=LOCK_BUSY_COUNTDOWN_SECONDS, queue=queue)
        except Exception as exc:  # the broker refused the message: keep the one we hold
            raise Reject(exc, requeue=True) from exc
        return {"outcome": "requeued_lock_busy"}
    except DailyReserveReachedError as exc:
        # Bulk work stops for the day; this handoff waits its turn again, not counted as a retry.
        # The pause holds this bulk process (live work has its own), so a stopped backlog is not
        # pulled through the worker over and over.
        log.warning("%s; %s %s goes back to the bulk queue", exc, kind, object_id)
        try:
            requeue_bulk(wired.redis, kind, object_id, task_id=task.request.id)
            time.sleep(exc.retry_after or DAILY_RESERVE_RECHECK_SECONDS)
            task.apply_async(args=(object_id, trigger), task_id=task.request.id, queue=queue)
        except Exception as requeue_error:  # keep the message we hold: the broker redelivers it
            raise Reject(requeue_error, requeue=True) from requeue_error
        return {"outcome": "deferred_daily_reserve"}
    except PermanentHubSpotError as exc:
        # Retrying will not help (403, 400...); kept for `replay` once the cause is fixed.
        _dead_letter(task, kind, object_id, trigger, f"permanent, not retried: {exc}", permanent=True)
        log.error("handoff of %s %s failed permanently; kept in the dead letter", kind, object_id)
        return {"outcome": "dead_letter"}
    except TransientHubSpotError as exc:
        if task.request.retries >= MAX_RETRIES:
            _dead_letter(task, kind, object_id, trigger, str(exc), permanent=False)
            log.error(
                "handoff of %s %s failed %d times; kept in the dead letter", kind, object_id, MAX_RETRIES + 1
            )
            return {"outcome": "dead_letter"}
        _retry(task, exc, retry_countdown(exc, task.request.retries))
    except redis.RedisError as exc:
        # Redis restarting or failing over: worth the same bounded retries. Past them the task
        # fails (the dead letter lives in Redis too) and the resync sweep finds the record again.
        log.warning("handoff of %s %s: Redis error %s; retrying", kind, object_id, type(exc).__name__)
        _retry(task, exc, backoff_seconds(task.request.retries))
    return {"outcome": run.outcome, "api_calls": run.api_calls}


@app.task(name=TASK_HANDOFF_DEAL, bind=True, acks_late=True, ignore_result=True, max_retries=MAX_RETRIES)
def handoff_deal(self: Task, deal_id: str, trigger: str = "") -> dict[str, Any]:
    return _run_handoff(self, RecordKind.DEAL, str(deal_id), trigger)


@app.task(name=TASK_HANDOFF_CONTACT, bind=True, acks_late=True, ignore_result=True, max_retries=MAX_RETRIES)
def handoff_contact(self: Task, contact_id: str, trigger: str = "") -> dict[str, Any]:
    return _run_handoff(self, RecordKind.CONTACT, str(contact_id), trigger)


@app.task(name=TASK_FORGET_RECORD, bind=True, acks_late=True, ignore_result=True)
def forget_record(
    self: Task, object_type: str, object_id: str, merged_into: str | None = None, event: str = ""
) -> None:
    try:
        process_wiring().engine.forget(object_type, str(object_id), str(merged_into) if merged_into else None)
    except LockBusyError:
        # A handoff of the record (or of the survivor) is running: the merge waits for it.
        try:
            self.apply_async(
                args=(object_type, object_id, merged_into, event), countdown=LOCK_BUSY_COUNTDOWN_SECONDS
            )
        except Exception as exc:  # the broker refused the message: keep the one we hold
            raise Reject(exc, requeue=True) from exc
        return
    log.info("forgot %s %s (%s, merged into %s)", object_type, object_id, event, merged_into)
