"""Turn decided events into queued Celery work, exactly once per burst, without losing any.

One Lua script per request (`pending.queue_once`) answers which events were seen before, sets the
pending mark of each record that has no live work queued yet, pushes one task message per record
so marked on the broker list, and records the new events' dedupe keys: one round trip, all or
nothing. Two concurrent requests about one record cannot both queue it, and a failure leaves
nothing behind, so the 503 that follows makes HubSpot retry a request that finds no trace of itself.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from handoff_worker.celery_app import (
    TASK_FORGET_RECORD,
    TASK_HANDOFF_CONTACT,
    TASK_HANDOFF_DEAL,
)
from handoff_worker.domain.events import Disposition, EventDecision, UnitKind, WorkUnit
from handoff_worker.intake.broker import PublishError, TaskPublisher, UnitCall
from handoff_worker.pending import WorkClass
from handoff_worker.state import KEY_PREFIX

# Longer than HubSpot's retry span (about 24 h), so every retry of a queued event is recognised.
DEDUPE_TTL_SECONDS = 3 * 24 * 3600

log = logging.getLogger(__name__)


class QueueUnavailableError(Exception):
    """Redis or the broker could not take the events; the caller answers 503."""


@dataclass
class DispatchResult:
    work_events: int = 0  # events that call for work, including duplicates
    duplicates: int = 0
    coalesced: int = 0  # units not published because the record already had work queued
    published: dict[str, int] = field(default_factory=dict)  # task name -> units

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
    def __init__(self, publisher: TaskPublisher, *, dedupe_ttl: int = DEDUPE_TTL_SECONDS) -> None:
        self._publisher = publisher
        self._dedupe_ttl = dedupe_ttl

    def dispatch(self, decisions: Sequence[EventDecision]) -> DispatchResult:
        work = [d for d in decisions if d.disposition is Disposition.WORK]
        result = DispatchResult(work_events=len(work))
        if not work:
            return result
        # The first event of each dedupe key; later copies in this batch are duplicates already.
        index_by_key: dict[str, int] = {}
        new_units_by_event: list[int] = []
        units: dict[str, tuple[WorkUnit, list[int]]] = {}
        for decision in work:
            key = decision.event.dedupe_key()
            if key in index_by_key:
                continue
            index = index_by_key[key] = len(index_by_key)
            new_units_by_event.append(len(decision.units))
            for unit in decision.units:
                units.setdefault(unit.coalesce_key, (unit, []))[1].append(index)
        calls = [
            UnitCall(
                *task_call(unit),
                None if unit.kind is UnitKind.FORGET else (unit.kind.value, unit.object_id),
                events,
            )
            for unit, events in units.values()
        ]
        try:
            outcome = self._publisher.publish_once(
                calls,
                work_class=WorkClass.LIVE,
                dedupe_keys=[seen_key(k) for k in index_by_key],
                dedupe_ttl=self._dedupe_ttl,
            )
        except PublishError as exc:
            raise QueueUnavailableError(str(exc)) from exc
        result.duplicates = len(work) - len(index_by_key) + sum(outcome.seen)
        for queued in outcome.calls:
            if queued is not None:
                result.published[queued.name] = result.published.get(queued.name, 0) + 1
        # Units named only by events seen before are duplicates; the others not queued coalesced.
        new_mentions = sum(new_units_by_event[i] for i, seen in enumerate(outcome.seen) if not seen)
        result.coalesced = new_mentions - result.units_published
        return result
