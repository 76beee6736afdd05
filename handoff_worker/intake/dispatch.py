"""Turn decided events into queued Celery work, exactly once per burst, without losing any.

Order matters for safety:
1. one read (MGET): which events were seen before, which records already have work queued;
2. one write to the broker (a single LPUSH): one task message per new record;
3. one pipelined write: pending marks and dedupe keys, only now that the work is durably queued.
Three round trips per request, however many events it holds. A crash between 2 and 3 loses
nothing: HubSpot retries the delivery and it is enqueued again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from handoff_worker.celery_app import (
    TASK_FORGET_RECORD,
    TASK_HANDOFF_CONTACT,
    TASK_HANDOFF_DEAL,
)
from handoff_worker.domain.events import Disposition, EventDecision, UnitKind, WorkUnit
from handoff_worker.intake.broker import TaskCall, TaskPublisher
from handoff_worker.pending import mark_pending_many, pending_key
from handoff_worker.state import KEY_PREFIX

# Longer than HubSpot's retry span (about 24 h), so every retry of a queued event is recognised.
DEDUPE_TTL_SECONDS = 3 * 24 * 3600

# SET with a TTL for many keys in one command (MSET has no TTL).
_SET_WITH_TTL_SCRIPT = """
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], '1', 'EX', ARGV[1])
end
return #KEYS
"""

log = logging.getLogger(__name__)


class QueueUnavailableError(Exception):
    """Redis or the broker could not take the events; the caller answers 503."""


@dataclass
class DispatchResult:
    work_events: int = 0  # events that call for work, including duplicates
    duplicates: int = 0
    coalesced: int = 0  # units not published because the record already had work queued
    published: dict[str, int] = field(default_factory=dict)  # task name -> units
    marks_written: bool = True

    @property
    def units_published(self) -> int:
        return sum(self.published.values())


def seen_key(dedupe_key: str) -> str:
    return f"{KEY_PREFIX}webhook:seen:{dedupe_key}"


def task_call(unit: WorkUnit) -> tuple[str, dict[str, Any]]:
    """The Celery task name and kwargs for a unit: only ids and small values cross the queue."""
    if unit.kind is UnitKind.DEAL:
        return TASK_HANDOFF_DEAL, {"deal_id": unit.object_id, "trigger": "webhook"}
    if unit.kind is UnitKind.CONTACT:
        return TASK_HANDOFF_CONTACT, {"contact_id": unit.object_id, "trigger": "webhook"}
    return TASK_FORGET_RECORD, {
        "object_type": str(unit.object_type),
        "object_id": unit.object_id,
        "merged_into": unit.merged_into,
        "event": unit.event,
    }


class Dispatcher:
    def __init__(
        self,
        redis_client: redis.Redis,
        publisher: TaskPublisher,
        *,
        dedupe_ttl: int = DEDUPE_TTL_SECONDS,
    ) -> None:
        self._redis = redis_client
        self._publisher = publisher
        self._dedupe_ttl = dedupe_ttl

    def dispatch(self, decisions: Sequence[EventDecision]) -> DispatchResult:
        work = [d for d in decisions if d.disposition is Disposition.WORK]
        result = DispatchResult(work_events=len(work))
        if not work:
            return result
        new_by_key, pending = self._read_state(work)
        new_events = list(new_by_key.values())
        result.duplicates = len(work) - len(new_events)

        units: dict[str, WorkUnit] = {}
        unit_mentions = 0
        for decision in new_events:
            for unit in decision.units:
                unit_mentions += 1
                units.setdefault(unit.coalesce_key, unit)
        to_publish = [u for u in units.values() if (u.kind.value, u.object_id) not in pending]
        result.coalesced = unit_mentions - len(to_publish)

        published = self._publish(to_publish, result)
        result.marks_written = self._write_marks(published, list(new_by_key))
        return result

    def _read_state(self, work: list[EventDecision]) -> tuple[dict[str, EventDecision], set[tuple[str, str]]]:
        """Events not seen before (first of each key in this batch) and the pending records."""
        first_by_key: dict[str, EventDecision] = {}
        for decision in work:
            first_by_key.setdefault(decision.event.dedupe_key(), decision)
        records = {
            (u.kind.value, u.object_id) for d in work for u in d.units if u.kind is not UnitKind.FORGET
        }
        record_list = sorted(records)
        # Both questions in one command and one round trip.
        keys = [seen_key(k) for k in first_by_key] + [pending_key(kind, oid) for kind, oid in record_list]
        try:
            values = self._redis.mget(keys)
        except redis.RedisError as exc:
            raise QueueUnavailableError(f"Redis did not answer the dedupe check: {exc}") from exc
        seen_flags, pending_flags = values[: len(first_by_key)], values[len(first_by_key) :]
        new_by_key = {
            key: d for (key, d), seen in zip(first_by_key.items(), seen_flags, strict=True) if seen is None
        }
        pending = {
            record for record, value in zip(record_list, pending_flags, strict=True) if value is not None
        }
        return new_by_key, pending

    def _publish(self, units: list[WorkUnit], result: DispatchResult) -> list[tuple[WorkUnit, str]]:
        calls = [TaskCall.new(*task_call(unit)) for unit in units]
        try:
            self._publisher.publish(calls)
        except redis.RedisError as exc:
            # One LPUSH is atomic: nothing of this request was queued, HubSpot's retry queues it.
            raise QueueUnavailableError(f"publishing {len(calls)} units to the broker failed: {exc}") from exc
        for call in calls:
            result.published[call.name] = result.published.get(call.name, 0) + 1
        return [(unit, call.task_id) for unit, call in zip(units, calls, strict=True)]

    def _write_marks(self, published: list[tuple[WorkUnit, str]], dedupe_keys: list[str]) -> bool:
        marks = [
            (u.kind.value, u.object_id, task_id) for u, task_id in published if u.kind is not UnitKind.FORGET
        ]
        pipe = self._redis.pipeline(transaction=False)
        mark_pending_many(pipe, marks)
        if dedupe_keys:
            pipe.eval(_SET_WITH_TTL_SCRIPT, len(dedupe_keys), *map(seen_key, dedupe_keys), self._dedupe_ttl)
        try:
            pipe.execute()
        except redis.RedisError as exc:
            # The work is queued; without marks a retry only queues it again (tasks are
            # idempotent), so this is worth a warning, not a 503.
            log.warning(
                "work was queued but its dedupe/pending marks were not written: %s",
                exc,
                extra={"fields": {"units": len(published), "events": len(dedupe_keys)}},
            )
            return False
        return True
