"""Redis connections. Every Redis key this project writes starts with `handoff:`."""

from __future__ import annotations

import redis

from handoff_worker.settings import Settings

KEY_PREFIX = "handoff:"


def redis_client(settings: Settings, *, socket_timeout: float = 2.0) -> redis.Redis:
    """A client with bounded timeouts: a slow or dead Redis fails fast instead of hanging."""
    return redis.Redis.from_url(
        settings.redis_url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout,
        health_check_interval=30,
        decode_responses=True,
    )
