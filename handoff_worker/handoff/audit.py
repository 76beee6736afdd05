"""One audit record per handoff: kept in Redis (capped) and logged as one JSON line."""

from __future__ import annotations

import json
import logging
from typing import Any

import redis

from handoff_worker.state import KEY_PREFIX

AUDIT_KEY = f"{KEY_PREFIX}audit"
AUDIT_CAP = 100_000

log = logging.getLogger("handoff_worker.audit")


def record_audit(client: redis.Redis, record: dict[str, Any]) -> None:
    line = json.dumps(record, sort_keys=True, default=str)
    pipe = client.pipeline(transaction=False)
    pipe.lpush(AUDIT_KEY, line)
    pipe.ltrim(AUDIT_KEY, 0, AUDIT_CAP - 1)
    pipe.execute()
    log.info(line)


def recent_audits(client: redis.Redis, count: int = 100) -> list[dict[str, Any]]:
    """Newest first."""
    return [json.loads(raw) for raw in client.lrange(AUDIT_KEY, 0, count - 1)]
