"""The scheduled resync: a Celery task on the `resync` queue and the beat entry that fires it.

The schedule itself is in `celery_app.beat_schedule`; the Procfile's `beat` runs it and its
`sweeper` consumes the `resync` queue. Several beats are harmless: the sweep's Redis lock makes a
second sweep exit without doing anything.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from celery import Celery

from handoff_worker.celery_app import (
    HANDOFF_QUEUE,
    TASK_HANDOFF_CONTACT,
    TASK_HANDOFF_DEAL,
    TASK_RESYNC_SWEEP,
    app,
)
from handoff_worker.handoff.resync import ResyncRequest, SweepBusyError, run_locked, scheduled_window
from handoff_worker.wiring import process_wiring

log = logging.getLogger(__name__)


class CelerySink:
    """Queues each found record as the same task a webhook would, on the `handoff` queue."""

    def __init__(self, celery: Celery) -> None:
        self.celery = celery

    def deal(self, deal_id: str) -> None:
        self.celery.send_task(
            TASK_HANDOFF_DEAL, kwargs={"deal_id": deal_id, "trigger": "resync"}, queue=HANDOFF_QUEUE
        )

    def contact(self, contact_id: str) -> None:
        self.celery.send_task(
            TASK_HANDOFF_CONTACT,
            kwargs={"contact_id": contact_id, "trigger": "resync"},
            queue=HANDOFF_QUEUE,
        )


@app.task(name=TASK_RESYNC_SWEEP, acks_late=True, ignore_result=True)
def resync_sweep() -> dict[str, object]:
    """One scheduled sweep from the watermark. Busy (another sweep holds the lock): nothing done."""
    wiring = process_wiring()
    since, until = scheduled_window(
        wiring.redis, now=datetime.now(UTC), lookback_minutes=wiring.settings.resync_lookback_minutes
    )
    try:
        summary = run_locked(
            wiring.redis,
            wiring.resync(CelerySink(app)),
            ResyncRequest(since=since, until=until),
            advance_watermark=True,
        )
    except SweepBusyError as exc:
        log.info("scheduled resync skipped: %s", exc)
        return {"skipped": str(exc)}
    log.info("scheduled resync finished: %s", summary.as_dict())
    return summary.as_dict()
