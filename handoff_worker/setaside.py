"""Queue messages the workers could not run, set aside instead of lost.

A message that is not a task message at all (not JSON, the wrong envelope), names a task this
release does not have, carries arguments the task does not take, failed with an error that is not
HubSpot's, or killed its worker process again and again, is kept here with what went wrong:
`handoff-worker failures` lists them, `handoff-worker replay --message ID` puts one back on its
queue (after a fix is deployed) and `--discard-message ID` drops it.

Handoffs that failed for a known reason (HubSpot refused a step) stay in the dead-letter record of
`handoff.deadletter`, which `replay --deal/--contact` runs again; this record is for messages.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import redis

from handoff_worker.state import KEY_PREFIX

SET_ASIDE_KEY = f"{KEY_PREFIX}deadletter:messages"
# Enough for any message of ours (a few hundred bytes); a huge foreign blob is kept in part only.
MAX_KEPT_MESSAGE_CHARS = 64 * 1024


@dataclass(frozen=True)
class SetAsideMessage:
    message_id: str  # the task id, or a digest of the text when it has none
    queue: str
    reason: str
    first_at: str
    last_at: str
    times: int = 1
    task: str = ""  # the task it names, when it could be read
    kwargs: dict[str, Any] | None = None  # its arguments, when they could be read
    raw: str = ""  # the message as it was in the queue, when it was not a readable task message
    truncated: bool = False  # only the first MAX_KEPT_MESSAGE_CHARS were kept: cannot be put back
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def replayable(self) -> bool:
        return bool(self.task and self.kwargs is not None) or bool(self.raw and not self.truncated)


def message_id_for(raw: str | bytes) -> str:
    """A stable id for text that carries no task id, so the same poison is counted once."""
    data = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogateescape")
    return "sha1-" + hashlib.sha1(data, usedforsecurity=False).hexdigest()[:16]


def as_text(raw: str | bytes) -> str:
    return raw if isinstance(raw, str) else raw.decode("utf-8", "backslashreplace")


def set_aside(
    client: redis.Redis,
    *,
    message_id: str,
    queue: str,
    reason: str,
    now: datetime,
    task: str = "",
    kwargs: dict[str, Any] | None = None,
    raw: str | bytes = "",
) -> SetAsideMessage:
    """Keep a message that could not be run; the same message again counts as one more time."""
    text = as_text(raw)
    previous = get_set_aside(client, message_id)
    record = SetAsideMessage(
        message_id=message_id,
        queue=queue,
        reason=reason,
        first_at=previous.first_at if previous else now.isoformat(),
        last_at=now.isoformat(),
        times=(previous.times + 1) if previous else 1,
        task=task,
        kwargs=kwargs,
        raw=text[:MAX_KEPT_MESSAGE_CHARS],
        truncated=len(text) > MAX_KEPT_MESSAGE_CHARS,
    )
    client.hset(SET_ASIDE_KEY, message_id, json.dumps(asdict(record)))
    return record


def _decode(raw: Any) -> SetAsideMessage:
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    return SetAsideMessage(**json.loads(text))


def get_set_aside(client: redis.Redis, message_id: str) -> SetAsideMessage | None:
    raw = client.hget(SET_ASIDE_KEY, message_id)
    return _decode(raw) if raw else None


def list_set_aside(client: redis.Redis) -> list[SetAsideMessage]:
    return sorted((_decode(raw) for raw in client.hvals(SET_ASIDE_KEY)), key=lambda m: m.first_at)


def discard(client: redis.Redis, message_id: str) -> bool:
    return bool(client.hdel(SET_ASIDE_KEY, message_id))


class NotReplayableError(Exception):
    """The message was kept only in part, or without anything to queue again."""


def put_back(client: redis.Redis, record: SetAsideMessage) -> str:
    """Queue the message again and forget it; returns the queue it went to.

    A message kept as it was goes back as it was (a release that knows its task can now run it);
    a task kept by name and arguments is sent again as a new task message.
    """
    # Here, not at the top: importing the Celery app reads the settings, and `failures` must be
    # able to say in one line that a setting is wrong.
    from handoff_worker.celery_app import (
        HANDOFF_QUEUE,
        RESYNC_QUEUE,
        TASK_RESYNC_SWEEP,
        create_celery,
        queue_key,
    )

    if not record.replayable:
        raise NotReplayableError(
            f"message {record.message_id} was kept only in part ({MAX_KEPT_MESSAGE_CHARS:,} characters); "
            "discard it with --discard-message"
        )
    queue = record.queue or (RESYNC_QUEUE if record.task == TASK_RESYNC_SWEEP else HANDOFF_QUEUE)
    if record.raw:
        pipe = client.pipeline(transaction=True)
        pipe.lpush(queue_key(queue), record.raw)
        pipe.hdel(SET_ASIDE_KEY, record.message_id)
        pipe.execute()
        return queue
    celery = create_celery()
    try:
        celery.send_task(record.task, kwargs=dict(record.kwargs or {}), queue=queue)
    finally:
        celery.close()
    discard(client, record.message_id)
    return queue
