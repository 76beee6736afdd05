"""Handoffs that failed for good wait here, never lost, until ops replay or remove them.

One JSON record per deal/contact in a Redis hash: the error, how many attempts, when it first and
last failed. A later success removes the record.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from datetime import datetime

import redis

from handoff_worker import metrics
from handoff_worker.domain.models import RecordKind
from handoff_worker.state import KEY_PREFIX

DEADLETTER_KEY = f"{KEY_PREFIX}deadletter"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FailedHandoff:
    kind: RecordKind
    object_id: str
    error: str
    attempts: int
    first_failed_at: str
    last_failed_at: str
    trigger: str = ""
    permanent: bool = False  # a step the config or data must fix (replay after fixing)

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.object_id}"


def record_failure(
    client: redis.Redis,
    kind: RecordKind,
    object_id: str,
    *,
    error: str,
    attempts: int,
    now: datetime,
    trigger: str = "",
    permanent: bool = False,
) -> FailedHandoff:
    previous = get_failure(client, kind, object_id)
    failure = FailedHandoff(
        kind=kind,
        object_id=object_id,
        error=error,
        attempts=(previous.attempts if previous else 0) + attempts,
        first_failed_at=previous.first_failed_at if previous else now.isoformat(),
        last_failed_at=now.isoformat(),
        trigger=trigger,
        permanent=permanent,
    )
    client.hset(DEADLETTER_KEY, failure.key, json.dumps(asdict(failure)))
    metrics.DEAD_LETTERS_RECORDED.labels(kind=str(kind), permanent=str(permanent).lower()).inc()
    log.warning(
        "handoff of %s %s failed and waits in the dead letter: %s. %s",
        kind,
        object_id,
        error,
        fix_hint(failure),
        extra={
            "kind": str(kind),
            "object_id": object_id,
            "attempts": failure.attempts,
            "permanent": permanent,
            "trigger": trigger,
            "dead_letter": True,
        },
    )
    return failure


def fix_hint(failure: FailedHandoff) -> str:
    """What to do about one dead letter, said where ops see it: the log line and `failures`."""
    replay = f"`handoff-worker replay --{failure.kind} {failure.object_id}`"
    if failure.permanent:
        return (
            "Fix what the error names (the nurture YAML, HubSpot's data or the app's scopes), "
            f"then run {replay}"
        )
    return (
        "HubSpot kept failing through every retry: check HubSpot's status and the rate budget "
        f"(`handoff-worker status`), then run {replay}"
    )


def get_failure(client: redis.Redis, kind: RecordKind, object_id: str) -> FailedHandoff | None:
    raw = client.hget(DEADLETTER_KEY, f"{kind}:{object_id}")
    return _failure(raw) if raw else None


def list_failures(client: redis.Redis) -> list[FailedHandoff]:
    records = [_failure(raw) for raw in client.hvals(DEADLETTER_KEY)]
    return sorted(records, key=lambda f: f.first_failed_at)


def remove_failure(client: redis.Redis, kind: RecordKind, object_id: str) -> bool:
    return bool(client.hdel(DEADLETTER_KEY, f"{kind}:{object_id}"))


def _failure(raw: str | bytes) -> FailedHandoff:
    stored = json.loads(raw)
    return FailedHandoff(**{**stored, "kind": RecordKind(stored["kind"])})
