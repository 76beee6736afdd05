"""kombu's Redis transport, with every message a worker pops screened before kombu reads it.

kombu parses what it pops from a queue list without a guard: text that is not JSON, or JSON that
is not a kombu envelope, raises inside the worker's event loop and ends the whole worker process
("Unrecoverable error"), and the message, already popped, is gone. kombu has no hook before that
parse (celery/celery#4308, celery/kombu#2421), but it builds its Redis client from the channel's
`Client`, and the key-prefix client already rewrites BRPOP's answer there. This transport's client
checks each popped message against the Celery protocol 2 task message (JSON, base64 body) that our
publishers write, sets aside anything else in `handoff_worker.setaside`, and tells kombu it found
nothing, so the worker carries on with the next message.

Selected by `celery_app.create_celery` through `broker_transport` when the broker is Redis.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import logging
from datetime import UTC, datetime
from typing import Any

import redis
from kombu.transport import redis as kombu_redis

from handoff_worker.setaside import message_id_for, set_aside

log = logging.getLogger(__name__)


def task_message_problem(raw: bytes | str) -> tuple[str | None, str]:
    """(what is wrong with this queue message, or None; its task id or a digest of it).

    A readable message is a kombu envelope around a Celery protocol 2 task: JSON, a base64 body
    holding `[args, kwargs, embed]`, and the `task` and `id` headers.
    """
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        envelope = json.loads(text)
    except (UnicodeDecodeError, ValueError):
        return "not a JSON text", message_id_for(raw)
    if not isinstance(envelope, dict):
        return f"JSON {type(envelope).__name__}, not a message envelope", message_id_for(raw)
    headers = envelope.get("headers")
    task_id = headers.get("id") if isinstance(headers, dict) else None
    message_id = task_id if isinstance(task_id, str) and task_id else message_id_for(raw)
    problem = _envelope_problem(envelope) or _headers_problem(headers) or _body_problem(envelope)
    return problem, message_id


def _envelope_problem(envelope: dict[str, Any]) -> str | None:
    properties = envelope.get("properties")
    if not isinstance(properties, dict):
        return "no `properties` object"
    if not isinstance(properties.get("delivery_tag"), str) or not properties["delivery_tag"]:
        return "no `properties.delivery_tag`"
    info = properties.get("delivery_info")
    routed = isinstance(info, dict) and all(isinstance(info.get(k), str) for k in ("exchange", "routing_key"))
    if not routed:
        return "no `properties.delivery_info` with `exchange` and `routing_key`"
    if properties.get("body_encoding") != "base64":
        return f"`properties.body_encoding` is {properties.get('body_encoding')!r}, not 'base64'"
    if envelope.get("content-type") != "application/json":
        return f"`content-type` is {envelope.get('content-type')!r}, not 'application/json'"
    if not isinstance(envelope.get("body"), str):
        return "no `body` text"
    return None


def _headers_problem(headers: Any) -> str | None:
    if not isinstance(headers, dict):
        return "no `headers` object"
    for name in ("task", "id"):
        if not isinstance(headers.get(name), str) or not headers[name]:
            return f"no `headers.{name}` (not a Celery protocol 2 task message)"
    if not isinstance(headers.get("retries", 0), int):
        return "`headers.retries` is not a whole number"
    for name in ("eta", "expires"):
        if headers.get(name) is not None and not isinstance(headers[name], str):
            return f"`headers.{name}` is not a date"
    return None


def _body_problem(envelope: dict[str, Any]) -> str | None:
    try:
        body = json.loads(base64.b64decode(envelope["body"], validate=True))
    except (binascii.Error, ValueError):
        return "`body` is not base64-encoded JSON"
    shape_ok = (
        isinstance(body, list)
        and len(body) == 3
        and isinstance(body[0], list)
        and isinstance(body[1], dict)
        and isinstance(body[2], dict | None)
    )
    return None if shape_ok else "`body` is not [args, kwargs, embed]"


class _ScreeningRedis(kombu_redis.PrefixedStrictRedis):
    """kombu's Redis client (key prefix included) that hands each popped message to `screen`."""

    def __init__(self, *args: Any, screen: Any, **kwargs: Any) -> None:
        self._screen = screen
        super().__init__(*args, **kwargs)

    def parse_response(self, connection: Any, command_name: Any, **options: Any) -> Any:
        response = super().parse_response(connection, command_name, **options)
        if command_name == "BRPOP" and response:
            queue, raw = response
            if self._screen(queue, raw):
                return None  # kombu reads "nothing popped" and polls again
        return response


class Channel(kombu_redis.Channel):
    def _get_client(self) -> Any:
        super()._get_client()  # kombu's own checks (redis-py version)
        return functools.partial(_ScreeningRedis, global_keyprefix=self.global_keyprefix, screen=self._screen)

    def _screen(self, queue: bytes | str, raw: bytes) -> bool:
        """True when the message was set aside instead of being delivered."""
        problem, message_id = task_message_problem(raw)
        if problem is None:
            return False
        name = queue.decode() if isinstance(queue, bytes) else str(queue)
        name = name.rsplit(self.sep, 1)[0]
        # Unprefixed: the set-aside record lives with our other keys, not under the broker's prefix.
        keeper = redis.Redis(connection_pool=self.pool)
        set_aside(keeper, message_id=message_id, queue=name, reason=problem, now=datetime.now(UTC), raw=raw)
        log.error(
            "set aside message %s from queue %s, it is not a task message: %s "
            "(see `handoff-worker failures`)",
            message_id,
            name,
            problem,
        )
        return True


class Transport(kombu_redis.Transport):
    Channel = Channel
