"""One audit record per handoff: kept in Redis (capped) and logged as one JSON line.

Each finished run is also counted in a per-minute tally by outcome (with its HubSpot calls), kept two
hours: `status` reads the last hour's work and the pace of the backlog from it in one round trip,
without reading the audit records themselves.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import redis

from handoff_worker.state import KEY_PREFIX

AUDIT_KEY = f"{KEY_PREFIX}audit"
AUDIT_CAP = 100_000
MINUTE_TALLY_PREFIX = f"{KEY_PREFIX}runs:minute:"
MINUTE_TALLY_TTL_SECONDS = 2 * 3600
API_CALLS_FIELD = "api_calls"

log = logging.getLogger("handoff_worker.audit")


def minute_tally_key(epoch_minute: int) -> str:
    return f"{MINUTE_TALLY_PREFIX}{epoch_minute}"


def record_audit(client: redis.Redis, record: dict[str, Any], *, now: float | None = None) -> None:
    line = json.dumps(record, sort_keys=True, default=str)
    tally = minute_tally_key(int((time.time() if now is None else now) // 60))
    pipe = client.pipeline(transaction=False)
    pipe.lpush(AUDIT_KEY, line)
    pipe.ltrim(AUDIT_KEY, 0, AUDIT_CAP - 1)
    pipe.hincrby(tally, str(record.get("outcome", "")), 1)
    pipe.hincrby(tally, API_CALLS_FIELD, int(record.get("api_calls") or 0))
    pipe.expire(tally, MINUTE_TALLY_TTL_SECONDS)
    pipe.execute()
    log.info(line)


def minute_tallies(client: redis.Redis, *, now: float, minutes: int) -> list[dict[str, int]]:
    """The tallies of the last `minutes` whole and current minutes, newest first."""
    current = int(now // 60)
    pipe = client.pipeline(transaction=False)
    for minute in range(current, current - minutes, -1):
        pipe.hgetall(minute_tally_key(minute))
    return [{str(k): int(v) for k, v in tally.items()} for tally in pipe.execute()]


def recent_audits(client: redis.Redis, count: int = 100) -> list[dict[str, Any]]:
    """Newest first."""
    return [json.loads(raw) for raw in client.lrange(AUDIT_KEY, 0, count - 1)]
