"""Publish Celery task messages straight to the Redis broker list, many in one command.

`celery.send_task` costs about 1-2 ms per message (message building, kombu routing, a fresh Redis
client and one round trip each), which made a batch of 100 new records take over 100 ms. This
module writes the very same message a Celery worker reads from kombu's Redis transport (task
protocol 2, JSON, base64 body, default priority) and pushes a whole request's messages with ONE
`LPUSH`, so the cost is one round trip however many units a request queues.

Only what the intake needs is supported: keyword arguments, the default priority, no ETA, no
result backend. The list is the queue's name under the broker's `global_keyprefix`, as kombu's
Redis transport names it. `tests/intake/test_broker_worker.py` proves a real `celery worker` consumes and
runs these messages.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from celery import Celery

from handoff_worker.pending import QueueEntry, QueueOnceResult, WorkClass, queue_once, unmark

# What Celery puts in a message that asks for no callbacks, chain or chord.
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


class BrokerConfigError(Exception):
    """The Celery broker is set up in a way these direct publishes cannot honour."""


class PublishError(Exception):
    """The broker did not take the messages; nothing of the call is queued or marked."""


@dataclass(frozen=True)
class TaskCall:
    """One task to queue: its registered name, keyword arguments and the id it will run under."""

    name: str
    kwargs: dict[str, Any]
    task_id: str

    @classmethod
    def new(cls, name: str, kwargs: dict[str, Any]) -> TaskCall:
        return cls(name, kwargs, str(uuid.uuid4()))


@dataclass(frozen=True)
class UnitCall:
    """A task to queue at most once: its name and keyword arguments, the record whose pending mark
    guards it (None: no mark), and the indexes of the events (among the dedupe keys queued beside
    it) that ask for it. Its task id is drawn only if it is queued."""

    name: str
    kwargs: dict[str, Any]
    record: tuple[str, str] | None
    events: Sequence[int] = ()


@dataclass(frozen=True)
class QueuedUnits:
    seen: tuple[bool, ...]  # one per dedupe key: the event was seen before
    calls: tuple[TaskCall | None, ...]  # one per unit: what was queued for it, or None


def encode_task_message(call: TaskCall, *, queue: str, origin: str) -> str:
    """The JSON text kombu's Redis transport stores for `send_task(name, kwargs=..., queue=...)`."""
    body = json.dumps([[], call.kwargs, _EMBED]).encode()
    headers: dict[str, object] = {
        "lang": "py",
        "task": call.name,
        "id": call.task_id,
        "shadow": None,
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [None, None],
        "root_id": call.task_id,
        "parent_id": None,
        "argsrepr": "()",
        "kwargsrepr": repr(call.kwargs),
        "origin": origin,
        "ignore_result": False,
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
    }
    properties = {
        "correlation_id": call.task_id,
        "reply_to": "",
        "delivery_mode": 2,  # persistent
        "delivery_info": {"exchange": "", "routing_key": queue},
        "priority": 0,
        "body_encoding": "base64",
        # The Redis transport's acks_late bookkeeping keys unacknowledged messages by this tag.
        "delivery_tag": str(uuid.uuid4()),
    }
    return json.dumps(
        {
            "body": base64.b64encode(body).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": headers,
            "properties": properties,
        }
    )


class RedisTaskPublisher:
    """Queues task messages on the Celery app's Redis broker, one `LPUSH` per call of `publish`."""

    def __init__(self, broker: redis.Redis, *, queue: str, key_prefix: str = "") -> None:
        self._broker = broker
        self._queue = queue
        self._list_key = f"{key_prefix}{queue}"
        self._origin = f"gen{os.getpid()}@{socket.gethostname()}"

    @classmethod
    def for_celery(cls, celery_app: Celery, *, queue: str, socket_timeout: float) -> RedisTaskPublisher:
        """A publisher on the broker Celery itself uses (its `broker_url`)."""
        url = str(celery_app.conf.broker_url or "")
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise BrokerConfigError(
                f"the intake publishes straight to a Redis broker, but the Celery broker is "
                f"{url.split('://', 1)[0] or 'not set'}:// (set REDIS_URL to a redis:// URL)"
            )
        options = celery_app.conf.broker_transport_options or {}
        client = redis.Redis.from_url(
            url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout
        )
        return cls(client, queue=queue, key_prefix=str(options.get("global_keyprefix") or ""))

    def publish(self, calls: Sequence[TaskCall]) -> None:
        """Queue every call in one command: all are queued, or a `redis.RedisError` is raised.

        One LPUSH is atomic in Redis, so a failure never leaves half a request queued. Workers pop
        from the other end, so messages run in the order given.
        """
        if not calls:
            return
        messages = [encode_task_message(c, queue=self._queue, origin=self._origin) for c in calls]
        self._broker.lpush(self._list_key, *messages)

    def ping(self) -> bool:
        """For /readyz: the broker answers, on a connection this publisher already holds."""
        return bool(self._broker.ping())

    def publish_once(
        self,
        units: Sequence[UnitCall],
        *,
        work_class: WorkClass,
        dedupe_keys: Sequence[str] = (),
        dedupe_ttl: int = 1,
    ) -> QueuedUnits:
        """Queue each unit its record's pending mark allows, marks and messages written in one
        atomic script (`pending.queue_once`). Raises PublishError: then nothing was written."""
        try:
            result, queued = _queue_units_once(
                self._broker,
                self._list_key,
                units,
                lambda call: encode_task_message(call, queue=self._queue, origin=self._origin),
                work_class=work_class,
                dedupe_keys=dedupe_keys,
                dedupe_ttl=dedupe_ttl,
            )
        except redis.RedisError as exc:
            raise PublishError(f"queueing {len(units)} units on {self._queue} failed: {exc}") from exc
        return QueuedUnits(result.seen, queued)


class CeleryTaskPublisher:
    """Queues task messages through Celery itself, for brokers other than Redis (the demo's
    in-process queue). Slower, and not atomic across calls: a failure part-way answers 503, HubSpot
    retries, and the units already queued run twice, which the idempotent handoff absorbs."""

    def __init__(self, celery_app: Celery, *, queue: str, marks: redis.Redis) -> None:
        self._celery = celery_app
        self._queue = queue
        self._marks = marks

    def publish(self, calls: Sequence[TaskCall]) -> None:
        for call in calls:
            self._celery.send_task(call.name, kwargs=call.kwargs, task_id=call.task_id, queue=self._queue)

    def ping(self) -> bool:
        """For /readyz: the broker answers (Celery's own connection pool, reused across calls)."""
        with self._celery.pool.acquire(block=True, timeout=2) as connection:
            connection.ensure_connection(max_retries=1)
        return True

    def publish_once(
        self,
        units: Sequence[UnitCall],
        *,
        work_class: WorkClass,
        dedupe_keys: Sequence[str] = (),
        dedupe_ttl: int = 1,
    ) -> QueuedUnits:
        """Marks first (atomically, in `marks`), then Celery's publish of the units they allow. A
        publish that fails takes its marks back, so the record does not look queued; should even
        that fail, the marks expire (pending.PENDING_TTL_SECONDS) and the next event or sweep
        queues the record."""
        try:
            # No list: the marks only; Celery publishes the messages below.
            result, queued = _queue_units_once(
                self._marks,
                None,
                units,
                lambda call: "",
                work_class=work_class,
                dedupe_keys=dedupe_keys,
                dedupe_ttl=dedupe_ttl,
            )
        except redis.RedisError as exc:
            raise PublishError(f"marking {len(units)} units failed: {exc}") from exc
        chosen = [(unit, call) for unit, call in zip(units, queued, strict=True) if call is not None]
        try:
            self.publish([call for _, call in chosen])
        except Exception as exc:  # kombu and its transports raise their own errors
            marks = [(*unit.record, call.task_id) for unit, call in chosen if unit.record is not None]
            new_events = [key for key, seen in zip(dedupe_keys, result.seen, strict=True) if not seen]
            # Should this fail too, the marks expire and the next event or sweep queues the records.
            with contextlib.suppress(redis.RedisError):
                unmark(self._marks, marks, work_class, dedupe_keys=new_events)
            raise PublishError(f"publishing {len(chosen)} units to {self._queue} failed: {exc}") from exc
        return QueuedUnits(result.seen, queued)


def _queue_units_once(
    client: redis.Redis,
    list_key: str | None,
    units: Sequence[UnitCall],
    message_for: Callable[[TaskCall], str],
    *,
    work_class: WorkClass,
    dedupe_keys: Sequence[str],
    dedupe_ttl: int,
) -> tuple[QueueOnceResult, tuple[TaskCall | None, ...]]:
    """`pending.queue_once` over units, each given a fresh TaskCall; answers the script's result
    and, per unit, the call it queued (None where its record's mark held it back)."""
    calls: dict[int, TaskCall] = {}

    def prepare(index: int) -> tuple[str, str]:
        call = calls[index] = TaskCall.new(units[index].name, units[index].kwargs)
        return call.task_id, message_for(call)

    result = queue_once(
        client,
        list_key,
        [QueueEntry(u.record, u.events) for u in units],
        prepare,
        work_class=work_class,
        dedupe_keys=dedupe_keys,
        dedupe_ttl=dedupe_ttl,
    )
    return result, tuple(calls[index] if ok else None for index, ok in enumerate(result.queued))


TaskPublisher = RedisTaskPublisher | CeleryTaskPublisher


def publisher_for(
    celery_app: Celery, *, queue: str, socket_timeout: float, marks: redis.Redis
) -> TaskPublisher:
    """The fast Redis publisher when Celery's broker is Redis (marks then live beside the queue, in
    the broker's Redis, which is REDIS_URL), Celery's own publishing otherwise, marks in `marks`."""
    url = str(celery_app.conf.broker_url or "")
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisTaskPublisher.for_celery(celery_app, queue=queue, socket_timeout=socket_timeout)
    return CeleryTaskPublisher(celery_app, queue=queue, marks=marks)
