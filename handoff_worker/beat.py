"""The scheduled resync: a Celery task on the `resync` queue and the beat entry that fires it.

The schedule itself is in `celery_app.beat_schedule`; the Procfile's `beat` runs it and its
`sweeper` consumes the `resync` queue. Several beats are harmless: the sweep's Redis lock makes a
second sweep exit without doing anything.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import redis
from celery import Celery

from handoff_worker.celery_app import (
    BULK_QUEUE,
    TASK_HANDOFF_CONTACT,
    TASK_HANDOFF_DEAL,
    TASK_MARKETING_DIGEST,
    TASK_RESYNC_SWEEP,
    app,
)
from handoff_worker.domain.models import RecordKind, WorkClass
from handoff_worker.handoff.notices import send_digests
from handoff_worker.handoff.resync import ResyncRequest, SweepBusyError, run_locked, scheduled_window
from handoff_worker.hubspot.ratelimit import work_class
from handoff_worker.intake.broker import UnitCall, publisher_for
from handoff_worker.wiring import process_wiring

log = logging.getLogger(__name__)


# Bounded like the intake's: a Redis that does not answer fails the sweep, whose watermark then stays.
SINK_REDIS_TIMEOUT_SECONDS = 2.0


class QueueingSink:
    """Queues each found record as the task a webhook would, on the bulk queue, unless work for it
    is already queued (live or bulk) or running: its pending mark and its message are written in one
    atomic step, as the intake does, so repeated sweeps never pile copies up behind each other."""

    def __init__(self, celery: Celery, marks: redis.Redis) -> None:
        self.publisher = publisher_for(
            celery, queue=BULK_QUEUE, socket_timeout=SINK_REDIS_TIMEOUT_SECONDS, marks=marks
        )

    def deal(self, deal_id: str) -> bool:
        return self._queue(RecordKind.DEAL, TASK_HANDOFF_DEAL, {"deal_id": deal_id, "trigger": "resync"})

    def contact(self, contact_id: str) -> bool:
        return self._queue(
            RecordKind.CONTACT, TASK_HANDOFF_CONTACT, {"contact_id": contact_id, "trigger": "resync"}
        )

    def _queue(self, kind: RecordKind, task: str, kwargs: dict[str, str]) -> bool:
        object_id = next(iter(kwargs.values()))
        unit = UnitCall(task, kwargs, (kind.value, object_id))
        (queued,) = self.publisher.publish_once([unit], work_class=WorkClass.BULK).calls
        return queued is not None


@app.task(name=TASK_RESYNC_SWEEP, acks_late=True, ignore_result=True)
def resync_sweep() -> dict[str, object]:
    """One scheduled sweep from the watermark. Busy (another sweep holds the lock): nothing done."""
    wiring = process_wiring()
    since, until = scheduled_window(
        wiring.redis, now=datetime.now(UTC), lookback_minutes=wiring.settings.resync_lookback_minutes
    )
    try:
        # A sweep's own reads are bulk work: a share of the budget beside live work, and they stop
        # at the daily reserve (the sweep then fails and its watermark stays).
        with work_class(WorkClass.BULK):
            summary = run_locked(
                wiring.redis,
                wiring.resync(QueueingSink(app, wiring.redis)),
                ResyncRequest(since=since, until=until),
                advance_watermark=True,
            )
    except SweepBusyError as exc:
        log.info("scheduled resync skipped: %s", exc)
        return {"skipped": str(exc)}
    log.info("scheduled resync finished: %s", summary.as_dict())
    return summary.as_dict()


@app.task(name=TASK_MARKETING_DIGEST, acks_late=True, ignore_result=True)
def marketing_digest() -> list[str]:
    """Post the marketing digest of each past day with episodes waiting (see handoff/notices.py)."""
    wiring = process_wiring()
    phase = wiring.engine.notices
    if phase.poster is None:
        return []
    days = send_digests(
        wiring.redis, phase.poster, wiring.rules.marketing_notices, phase.env, today=datetime.now(UTC).date()
    )
    return [day.isoformat() for day in days]
