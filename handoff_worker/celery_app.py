"""The Celery application, built from settings by one factory.

Three queues: `handoff` for live work from webhooks, `handoff_bulk` for the handoffs sweeps and
backfills queue, `resync` for the sweeps themselves, so a large resync never delays live
handoffs. Tasks are referred to by name (the constants below) so the intake can
enqueue without importing the handoff code.

Every key the broker writes starts with BROKER_KEY_PREFIX (`handoff:broker:`), so all of this
project's Redis keys share the `handoff:` prefix. A message that is not a task message is set aside
by `broker_transport` instead of ending the worker; a task that fails for a reason other than
HubSpot's, runs past its time limit or keeps killing its worker process is set aside by
`worker_guards`. Remote control is off, and the Procfile starts workers without gossip, mingle and
event heartbeats: nothing here inspects, commands or watches workers, so those would be broadcast
traffic through Redis for no one.
"""

from __future__ import annotations

import ssl
import sys
from datetime import timedelta
from pathlib import Path

from celery import Celery

from handoff_worker import celery_process
from handoff_worker.errors import SettingsError
from handoff_worker.settings import Settings, get_settings
from handoff_worker.state import KEY_PREFIX

HANDOFF_QUEUE = "handoff"
# Handoffs a sweep or a backfill queued: consumed by their own process (the Procfile's `bulk`), and
# held to HANDOFF_BULK_SHARE of the rate budget while live work is using it.
BULK_QUEUE = "handoff_bulk"
RESYNC_QUEUE = "resync"

# Task names: the intake enqueues by these, tasks.py registers them.
TASK_HANDOFF_DEAL = "handoff_worker.handoff_deal"
TASK_HANDOFF_CONTACT = "handoff_worker.handoff_contact"
TASK_FORGET_RECORD = "handoff_worker.forget_record"
TASK_RESYNC_SWEEP = "handoff_worker.resync_sweep"
TASK_MARKETING_DIGEST = "handoff_worker.marketing_digest"

# The longest task (a deal with thousands of contacts at the default budget) stays well under this;
# a task not acknowledged within it is handed to another worker.
VISIBILITY_TIMEOUT_SECONDS = 3600
# A task still running after TASK_TIME_LIMIT_SECONDS is stuck (a hung reload, a dead socket without
# a timeout): its process is replaced and the handoff set aside for `replay`. Half the visibility
# timeout, so it ends before the broker would hand the same message to another worker. The soft
# limit comes first, raising inside the task so it can record its failure itself.
TASK_TIME_LIMIT_SECONDS = VISIBILITY_TIMEOUT_SECONDS // 2
TASK_SOFT_TIME_LIMIT_SECONDS = TASK_TIME_LIMIT_SECONDS - 60
# A message whose task killed its worker process is sent again after this long, counting as one
# retry (the task's max_retries bounds it), then set aside instead of killing processes forever.
WORKER_LOST_RETRY_SECONDS = 10
BROKER_KEY_PREFIX = f"{KEY_PREFIX}broker:"
BROKER_TRANSPORT = "handoff_worker.broker_transport:Transport"
BEAT_ENTRY = "resync-sweep"
DIGEST_BEAT_ENTRY = "marketing-digest"
# Hourly: a digest posts the day after; a beat that was down catches up within the hour.
DIGEST_INTERVAL = timedelta(hours=1)


def beat_schedule(settings: Settings) -> dict[str, dict[str, object]]:
    """The scheduled resync sweep, every RESYNC_INTERVAL_MINUTES, and the marketing digest, hourly,
    both on the `resync` queue."""
    interval = timedelta(minutes=settings.resync_interval_minutes)
    return {
        BEAT_ENTRY: {
            "task": TASK_RESYNC_SWEEP,
            "schedule": interval,
            # A sweep not started within one interval is stale: the next one covers its window.
            "options": {"queue": RESYNC_QUEUE, "expires": interval.total_seconds()},
        },
        # The marketing notices' daily digest (nurture YAML, marketing_notices > daily_digest).
        DIGEST_BEAT_ENTRY: {
            "task": TASK_MARKETING_DIGEST,
            "schedule": DIGEST_INTERVAL,
            "options": {"queue": RESYNC_QUEUE, "expires": DIGEST_INTERVAL.total_seconds()},
        },
    }


def queue_key(queue: str) -> str:
    """The Redis list that holds `queue`'s messages."""
    return f"{BROKER_KEY_PREFIX}{queue}"


def create_celery(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    app = Celery(
        "handoff_worker",
        include=["handoff_worker.tasks", "handoff_worker.beat", "handoff_worker.worker_metrics"],
    )
    redis_broker = settings.redis_url.startswith(("redis://", "rediss://", "unix://"))
    app.conf.update(
        broker_url=settings.redis_url,
        broker_transport=BROKER_TRANSPORT if redis_broker else None,
        # kombu turns TLS on for a rediss:// URL by the scheme's name, which the explicit transport
        # replaces: ask for it here, verifying the server (`?ssl_cert_reqs=...` in the URL wins).
        broker_use_ssl={"ssl_cert_reqs": ssl.CERT_REQUIRED}
        if settings.redis_url.startswith("rediss://")
        else None,
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_retry_on_worker_lost=True,
        # Celery has no setting for it: the worker-lost retry waits the task's default_retry_delay.
        task_annotations={"*": {"default_retry_delay": WORKER_LOST_RETRY_SECONDS}},
        task_time_limit=TASK_TIME_LIMIT_SECONDS,
        task_soft_time_limit=TASK_SOFT_TIME_LIMIT_SECONDS,
        worker_enable_remote_control=False,
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
            "global_keyprefix": BROKER_KEY_PREFIX,
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
    celery_process.install(app)
    return app


def _celery_command() -> str | None:
    """`worker` or `beat` when this process is the `celery` program (the Procfile's worker, bulk,
    sweeper and beat lines), else None."""
    program = Path(sys.argv[0])
    if "celery" not in (program.name, program.parent.name):
        return None
    return next((arg for arg in sys.argv[1:] if arg in {"worker", "beat"}), "celery")


def _create_or_refuse() -> Celery:
    # Settings are read here, while `celery -A` imports the app: a bad one would otherwise end the
    # process in a page of import traceback with the useful line at its bottom.
    try:
        return create_celery()
    except SettingsError as exc:
        command = _celery_command()
        if command is None:
            raise  # imported by the web process or a command: their own checks report it
        from handoff_worker.startup import refuse_to_start

        refuse_to_start(command, exc)


app = _create_or_refuse()
