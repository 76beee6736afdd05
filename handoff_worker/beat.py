"""The scheduled resync: a Celery task on the `resync` queue and the beat entry that fires it.

Run the scheduler with `celery -A handoff_worker.beat beat` (one or several: the sweep's Redis lock
makes a second beat's sweep exit without doing anything). Workers that consume the `resync` queue
must import this module so the task is registered (`celery -A handoff_worker.beat worker -Q resync`).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from celery import Celery

from handoff_worker.celery_app import (
    HANDOFF_QUEUE,
    RESYNC_QUEUE,
    TASK_HANDOFF_CONTACT,
    TASK_HANDOFF_DEAL,
    TASK_RESYNC_SWEEP,
    app,
)
from handoff_worker.settings import Settings, get_settings

log = logging.getLogger(__name__)

BEAT_ENTRY = "resync-sweep"


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


def beat_schedule(settings: Settings) -> dict[str, dict[str, object]]:
    interval = timedelta(minutes=settings.resync_interval_minutes)
    return {
        BEAT_ENTRY: {
            "task": TASK_RESYNC_SWEEP,
            "schedule": interval,
            # A sweep not started within one interval is stale: the next one covers its window.
            "options": {"queue": RESYNC_QUEUE, "expires": interval.total_seconds()},
        }
    }


app.conf.beat_schedule = beat_schedule(get_settings())


@app.task(name=TASK_RESYNC_SWEEP, acks_late=True, ignore_result=True)
def resync_sweep() -> dict[str, object]:
    """One scheduled sweep from the watermark. Busy (another sweep holds the lock): nothing done."""
    from handoff_worker.handoff.commands import build_wiring
    from handoff_worker.handoff.resync import (
        ResyncRequest,
        SweepBusyError,
        run_locked,
        scheduled_window,
    )

    settings = get_settings()
    wiring = build_wiring(settings)
    since, until = scheduled_window(
        wiring.redis, now=datetime.now(UTC), lookback_minutes=settings.resync_lookback_minutes
    )
    try:
        summary = run_locked(
            wiring.redis,
            wiring.resync(inline=False),
            ResyncRequest(since=since, until=until),
            advance_watermark=True,
        )
    except SweepBusyError as exc:
        log.info("scheduled resync skipped: %s", exc)
        return {"skipped": str(exc)}
    log.info("scheduled resync finished: %s", summary.as_dict())
    return summary.as_dict()
