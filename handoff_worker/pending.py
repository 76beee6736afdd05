"""Pending marks: a burst of webhooks about one deal or contact becomes one queued unit of work.

The intake marks a record pending right AFTER it enqueued work for it; further events about that
record are then acknowledged without new work, because the queued task has not read HubSpot yet
and will see their changes. The task calls `release_pending` at its very start, BEFORE it reads
HubSpot, so an event arriving after that read finds no mark and queues a fresh unit.

A task so quick that it releases before the intake has written the mark would leave a stale mark
behind. To close that window, the task can pass its Celery task id: release then leaves a short
tombstone and a late mark for that same task id is skipped.

Kinds are `RecordKind` values, "deal" and "contact". Marks expire after an hour, so a lost task never
blocks a record for long.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis

from handoff_worker.domain.models import RecordKind
from handoff_worker.state import KEY_PREFIX

PENDING_TTL_SECONDS = 3600
PENDING_KINDS = frozenset(RecordKind)

# Set each mark unless the task it names has already started (its tombstone exists), for many
# records in one command: KEYS are (mark, tombstone) pairs, ARGV the TTL then one task id per pair.
_MARK_MANY_SCRIPT = """
local written = 0
for i = 1, #KEYS, 2 do
  if redis.call('EXISTS', KEYS[i + 1]) == 0 then
    redis.call('SET', KEYS[i], ARGV[(i + 1) / 2 + 1], 'EX', ARGV[1])
    written = written + 1
  end
end
return written
"""

RedisLike = redis.Redis | redis.client.Pipeline


def pending_key(kind: str, object_id: str) -> str:
    if kind not in PENDING_KINDS:
        raise ValueError(f"pending kind {kind!r} is not one of {sorted(k.value for k in PENDING_KINDS)}")
    return f"{KEY_PREFIX}pending:{kind}:{object_id}"


def _started_key(task_id: str) -> str:
    return f"{KEY_PREFIX}pending:started:{task_id}"


def mark_pending_many(
    r: RedisLike, marks: Sequence[tuple[str, str, str]], *, ttl: int = PENDING_TTL_SECONDS
) -> None:
    """Mark records as having queued work, one (kind, id, task_id) each, in one command however many
    there are. Call only after the work was durably enqueued. With a pipeline the command is queued
    and runs on the pipeline's `execute()`."""
    if not marks:
        return
    keys: list[str] = []
    task_ids: list[str] = []
    for kind, object_id, task_id in marks:
        keys += [pending_key(kind, object_id), _started_key(task_id)]
        task_ids.append(task_id)
    r.eval(_MARK_MANY_SCRIPT, len(keys), *keys, ttl, *task_ids)


def release_pending(r: redis.Redis, kind: str, object_id: str, *, task_id: str | None = None) -> None:
    """Called by the task first thing, before it re-reads HubSpot. Pass the Celery task id
    (`self.request.id`) so a mark the intake writes after this moment is not left behind."""
    pipe = r.pipeline(transaction=True)
    pipe.delete(pending_key(kind, object_id))
    if task_id:
        pipe.set(_started_key(task_id), "1", ex=PENDING_TTL_SECONDS)
    pipe.execute()
