"""What the workers do with a message they cannot run: set it aside, never acknowledge and lose it.

Celery acknowledges a late-acknowledged message when its task fails, runs past its hard time limit,
or has killed its worker process more times than the task's `max_retries` (with
`task_retry_on_worker_lost`); it rejects, and so drops, a message for a task it does not know or
that it cannot read. Its signals fire at each of these moments, before the message is gone for
good or right after, with the task's name and arguments or the message itself: these handlers keep
them. A handoff keeps its place in the dead-letter record (`replay --deal/--contact` runs it
again); any other message is kept in `handoff_worker.setaside` (`replay --message`).

HubSpot's own errors never get here: the tasks dead-letter those themselves.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import redis
from celery import signals

from handoff_worker.celery_app import TASK_HANDOFF_CONTACT, TASK_HANDOFF_DEAL
from handoff_worker.domain.models import RecordKind
from handoff_worker.errors import HandoffError
from handoff_worker.handoff.deadletter import record_failure
from handoff_worker.hubspot.translate import without_emails
from handoff_worker.setaside import set_aside
from handoff_worker.settings import get_settings
from handoff_worker.startup import refuse_to_start, warn_about_durability
from handoff_worker.state import redis_client
from handoff_worker.wiring import process_wiring

log = logging.getLogger(__name__)

MAX_ERROR_CHARS = 500
_HANDOFF_ARGUMENT = {
    TASK_HANDOFF_DEAL: (RecordKind.DEAL, "deal_id"),
    TASK_HANDOFF_CONTACT: (RecordKind.CONTACT, "contact_id"),
}


def _redis() -> redis.Redis:
    """The process's Redis: the wiring's (the demo installs its own), else one from REDIS_URL when
    the wiring cannot be built (a failure before the worker's checks, a test's probe worker)."""
    try:
        return process_wiring().redis
    except HandoffError:
        return redis_client(get_settings())


def check_worker() -> None:
    """Build the worker's wiring (settings, rules) now, or exit with one line naming what is wrong.

    Run before the worker takes any task (`worker_init`). The wiring built here is the one the
    pool processes inherit, as the first task would have built it."""
    try:
        wiring = process_wiring()
        wiring.rules_store.current()
    except HandoffError as exc:
        refuse_to_start("worker", exc)
    warn_about_durability("worker", wiring.redis)


def describe(exc: BaseException | None) -> str:
    """An error in words fit for the dead letter: its type and text, without emails, bounded."""
    if exc is None:
        return "no error given"
    text = without_emails(str(exc))
    described = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return described[:MAX_ERROR_CHARS]


def keep_failed_task(
    task_name: str, task_id: str, kwargs: dict[str, Any] | None, error: str, *, queue: str = ""
) -> None:
    """Keep a task that failed for good: a handoff in the dead letter, anything else set aside."""
    now = datetime.now(UTC)
    handoff = _HANDOFF_ARGUMENT.get(task_name)
    object_id = (kwargs or {}).get(handoff[1]) if handoff else None
    if handoff and isinstance(object_id, str | int) and str(object_id):
        record_failure(
            _redis(),
            handoff[0],
            str(object_id),
            error=f"unexpected failure, not retried: {error}",
            attempts=1,
            now=now,
            trigger=str((kwargs or {}).get("trigger", "")),
        )
        log.error("%s %s failed unexpectedly (%s); kept in the dead letter", handoff[0], object_id, error)
        return
    set_aside(
        _redis(),
        message_id=task_id,
        queue=queue,
        reason=f"failed: {error}",
        now=now,
        task=task_name,
        kwargs=kwargs if isinstance(kwargs, dict) else None,
    )
    log.error("task %s[%s] failed (%s); set aside", task_name, task_id, error)


_last_kept: tuple[str, str] | None = None


@signals.task_failure.connect
def _on_task_failure(
    sender: Any = None,
    task_id: str = "",
    exception: BaseException | None = None,
    kwargs: dict[str, Any] | None = None,
    **_: Any,
) -> None:
    global _last_kept
    name = getattr(sender, "name", "") or ""
    seen = (task_id, type(exception).__name__)
    if seen == _last_kept:
        return  # Celery signals a hard time limit twice: from the timeout, then from the failure
    _last_kept = seen
    delivery = getattr(getattr(sender, "request", None), "delivery_info", None) or {}
    try:
        keep_failed_task(
            name, task_id, kwargs, describe(exception), queue=str(delivery.get("routing_key") or "")
        )
    except redis.RedisError as exc:
        # Redis is where the record would go, and the broker too: nothing more can be kept.
        log.critical("task %s[%s] failed and could not be kept: Redis error %s", name, task_id, exc)


def _raw_message(message: Any) -> str:
    raw = getattr(message, "_raw", None)  # the envelope as the transport read it
    if isinstance(raw, dict):
        return json.dumps(raw)
    return ""


def _keep_unrunnable(message: Any, reason: str, task_name: str = "", task_id: str = "") -> None:
    headers = getattr(message, "headers", None) or {}
    info = getattr(message, "delivery_info", None) or {}
    message_id = task_id or str(headers.get("id") or "") or "unknown"
    try:
        set_aside(
            _redis(),
            message_id=message_id,
            queue=str(info.get("routing_key") or ""),
            reason=reason,
            now=datetime.now(UTC),
            task=task_name or str(headers.get("task") or ""),
            raw=_raw_message(message),
        )
    except redis.RedisError as exc:
        log.critical("message %s could not be run nor kept: Redis error %s", message_id, exc)
        return
    log.error("message %s set aside: %s (see `handoff-worker failures`)", message_id, reason)


@signals.task_unknown.connect
def _on_task_unknown(message: Any = None, name: str = "", id: str = "", **_: Any) -> None:
    _keep_unrunnable(message, f"no task named {name!r} in this release", task_name=name, task_id=id)


@signals.task_rejected.connect
def _on_task_rejected(message: Any = None, exc: BaseException | None = None, **_: Any) -> None:
    _keep_unrunnable(message, f"not a task message Celery can run: {describe(exc)}")
