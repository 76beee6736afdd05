"""The Celery application, built from settings by one factory.

Two queues: `handoff` for live work from webhooks, `resync` for sweeps, so a large resync never
delays live handoffs. Tasks are referred to by name (the constants below) so the intake can
enqueue without importing the handoff code.
"""

from __future__ import annotations

from datetime import timedelta

from celery import Celery

from handoff_worker.settings import Settings, get_settings

HANDOFF_QUEUE = "handoff"
RESYNC_QUEUE = "resync"

# Task names: the intake enqueues by these, tasks.py registers them.
TASK_HANDOFF_DEAL = "handoff_worker.handoff_deal"
TASK_HANDOFF_CONTACT = "handoff_worker.handoff_contact"
TASK_FORGET_RECORD = "handoff_worker.forget_record"
TASK_RESYNC_SWEEP = "handoff_worker.resync_sweep"

# The longest task (a deal with thousands of contacts at the default budget) stays well under this;
# a task not acknowledged within it is handed to another worker.
VISIBILITY_TIMEOUT_SECONDS = 3600
BEAT_ENTRY = "resync-sweep"


def beat_schedule(settings: Settings) -> dict[str, dict[str, object]]:
    """The scheduled resync sweep, every RESYNC_INTERVAL_MINUTES, on the `resync` queue."""
    interval = timedelta(minutes=settings.resync_interval_minutes)
    return {
        BEAT_ENTRY: {
            "task": TASK_RESYNC_SWEEP,
            "schedule": interval,
            # A sweep not started within one interval is stale: the next one covers its window.
            "options": {"queue": RESYNC_QUEUE, "expires": interval.total_seconds()},
        }
    }


def create_celery(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    app = Celery("handoff_worker", include=["handoff_worker.tasks", "handoff_worker.beat"])
    app.conf.update(
        broker_url=settings.redis_url,
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=HANDOFF_QUEUE,
        task_routes={TASK_RESYNC_SWEEP: {"queue": RESYNC_QUEUE}},
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": VISIBILITY_TIMEOUT_SECONDS,
            # Bounded so a dead Redis turns into a quick 503 at the intake, not a hung request.
            "socket_timeout": 2.0,
            "socket_connect_timeout": 2.0,
            "max_retries": 1,
        },
        task_publish_retry=True,
        task_publish_retry_policy={
            "max_retries": 2,
            "interval_start": 0.0,
            "interval_step": 0.2,
            "interval_max": 0.5,
        },
        worker_hijack_root_logger=False,
        broker_pool_limit=10,
        beat_schedule=beat_schedule(settings),
    )
    return app


app = create_celery()
