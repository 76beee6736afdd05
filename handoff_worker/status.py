"""What the deployment holds now, read from Redis: the `status` command's screen, the gauges every
scrape of a Celery worker's /metrics reads, and a progress view for a backlog.

One reading (`read_status`) serves all three, so the numbers a person reads and the numbers an alert
fires on are the same: messages queued per queue, handoffs running, records waiting for a reason
(and the oldest), dead letters, runs finished in the last hour by outcome, the pace of the last ten
minutes and the backlog's ETA at that pace, the HubSpot budget in use, the last good sweep.

`assess` turns a reading into problems and an exit code a monitoring check can use:
0 all well, 1 warning, 2 critical (`status` adds 3: cannot tell).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any

import redis
from celery import Celery

from handoff_worker.domain.models import RecordKind
from handoff_worker.handoff.audit import minute_tallies
from handoff_worker.handoff.deadletter import list_failures
from handoff_worker.handoff.ledger import WAITING_INDEX, waiting_key
from handoff_worker.handoff.lock import running_count
from handoff_worker.handoff.resync.window import read_watermark
from handoff_worker.handoff.run_record import Outcome
from handoff_worker.hubspot.ratelimit import BudgetUse, DailyBudget, RedisRateLimiter
from handoff_worker.setaside import SET_ASIDE_KEY
from handoff_worker.settings import Settings

log = logging.getLogger(__name__)

PACE_MINUTES = 10  # the pace (and so the ETA) is that of the last ten minutes
HOUR_MINUTES = 60
# Queues whose messages are sweeps, not handoffs (celery_app.RESYNC_QUEUE): not in the handoff backlog.
# (celery_app is imported only when a reading is taken: importing it builds the app from the
# settings, and `status` must be able to say that a setting is wrong.)
SWEEP_QUEUES = frozenset({"resync"})


class Health(IntEnum):
    """Exit codes of `status`, in the convention monitoring checks (Nagios, Icinga, Sensu) read."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3


@dataclass(frozen=True)
class WaitingKind:
    count: int = 0
    oldest_seconds: float = 0.0
    past_sla: int = 0
    escalated: int = 0


@dataclass(frozen=True)
class Status:
    at: str
    queued: dict[str, int]
    held_by_workers: int
    running: int
    waiting: dict[str, WaitingKind]
    sla_hours: float | None
    dead_letters: dict[str, int]
    dead_letters_permanent: int
    set_aside: int
    last_hour: dict[str, int]
    api_calls_last_hour: int
    pace_per_minute: float
    backlog: int
    eta_seconds: float | None
    budget: dict[str, Any]
    last_good_sweep: str | None
    last_good_sweep_age_seconds: float | None
    problems: list[dict[str, str]] = field(default_factory=list)

    @property
    def done_last_hour(self) -> int:
        return sum(self.last_hour.values())

    def as_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["done_last_hour"] = self.done_last_hour
        return record


def queue_names(celery: Celery) -> list[str]:
    """The queues the app sends to: its default queue, the routes' and any declared ones."""
    from handoff_worker.celery_app import BULK_QUEUE, HANDOFF_QUEUE, RESYNC_QUEUE

    names = {str(celery.conf.task_default_queue or HANDOFF_QUEUE), HANDOFF_QUEUE, BULK_QUEUE, RESYNC_QUEUE}
    routes = celery.conf.task_routes if isinstance(celery.conf.task_routes, dict) else {}
    for route in routes.values():
        if isinstance(route, dict) and route.get("queue"):
            names.add(str(route["queue"]))
    for queue in celery.conf.task_queues or ():
        names.add(str(getattr(queue, "name", queue)))
    return sorted(names)


def read_queues(celery: Celery, names: Sequence[str]) -> tuple[dict[str, int], int]:
    """Messages waiting in each queue, and messages delivered to a worker and not yet acknowledged
    (running, reserved by a pool process, or held until a retry's countdown). Read through the
    broker's own client, so its key layout (priorities, a key prefix) is the transport's business."""
    with celery.connection_for_read() as connection:
        channel = connection.default_channel
        queued = {name: int(channel.queue_declare(queue=name).message_count) for name in names}
        client = getattr(channel, "client", None)
        unacked_key = getattr(channel, "unacked_key", None)
        held = int(client.hlen(unacked_key)) if client is not None and unacked_key else 0
    return queued, held


def read_waiting(client: redis.Redis, *, now: datetime, sla_hours: float | None) -> dict[str, WaitingKind]:
    members = sorted(str(m) for m in client.smembers(WAITING_INDEX))
    parts = (member.partition(":") for member in members)
    keys = [waiting_key(RecordKind(kind), object_id) for kind, _, object_id in parts]
    raw = client.mget(keys) if keys else []
    found: dict[str, list[dict[str, Any]]] = {str(kind): [] for kind in RecordKind}
    for value in raw:
        if value:
            record = json.loads(str(value))
            found.setdefault(str(record["kind"]), []).append(record)
    summary = {}
    for kind, records in found.items():
        ages = [(now - datetime.fromisoformat(r["since"])).total_seconds() for r in records]
        summary[kind] = WaitingKind(
            count=len(records),
            oldest_seconds=max(ages, default=0.0),
            past_sla=sum(1 for age in ages if sla_hours is not None and age > sla_hours * 3600),
            escalated=sum(1 for r in records if r.get("escalated")),
        )
    return summary


def read_status(
    client: redis.Redis,
    celery: Celery,
    settings: Settings,
    *,
    now: datetime | None = None,
    sla_hours: float | None = None,
    queues: Sequence[str] | None = None,
) -> Status:
    now = now or datetime.now(UTC)
    names = list(queues) if queues is not None else queue_names(celery)
    queued, held = read_queues(celery, names)
    tallies = minute_tallies(client, now=now.timestamp(), minutes=HOUR_MINUTES)
    last_hour: dict[str, int] = {}
    api_calls = 0
    for tally in tallies:
        api_calls += tally.pop("api_calls", 0)
        for outcome, count in tally.items():
            last_hour[outcome] = last_hour.get(outcome, 0) + count
    recent = sum(sum(v for k, v in t.items() if k != "api_calls") for t in tallies[:PACE_MINUTES])
    # The current minute is under way: the window is the nine before it and what has passed of it.
    window_minutes = PACE_MINUTES - 1 + (now.timestamp() % 60) / 60
    pace = recent / window_minutes
    backlog = sum(count for name, count in queued.items() if name not in SWEEP_QUEUES)
    eta = 0.0 if backlog == 0 else (backlog / pace * 60 if pace > 0 else None)
    failures = list_failures(client)
    dead: dict[str, int] = {str(kind): 0 for kind in RecordKind}
    for failure in failures:
        dead[str(failure.kind)] = dead.get(str(failure.kind), 0) + 1
    limiter = RedisRateLimiter(
        client,
        settings.rate_limit,
        settings.search_rate_limit,
        bulk_share=settings.bulk_share,
        daily_reserve=settings.daily_reserve,
    )
    budget = limiter.in_use()
    daily = limiter.daily_budget()
    watermark = read_watermark(client)
    status = Status(
        at=now.isoformat(timespec="seconds"),
        queued=queued,
        held_by_workers=held,
        running=running_count(client, now=now.timestamp()),
        waiting=read_waiting(client, now=now, sla_hours=sla_hours),
        sla_hours=sla_hours,
        dead_letters=dead,
        dead_letters_permanent=sum(1 for f in failures if f.permanent),
        set_aside=int(client.hlen(SET_ASIDE_KEY)),
        last_hour=dict(sorted(last_hour.items())),
        api_calls_last_hour=api_calls,
        pace_per_minute=round(pace, 2),
        backlog=backlog,
        eta_seconds=None if eta is None else round(eta),
        budget=_budget_dict(budget, daily),
        last_good_sweep=watermark.isoformat(timespec="seconds") if watermark else None,
        last_good_sweep_age_seconds=round((now - watermark).total_seconds()) if watermark else None,
    )
    status.problems.extend(assess(status, settings))
    return status


def _budget_dict(use: BudgetUse, daily: DailyBudget | None) -> dict[str, Any]:
    return {
        # As HubSpot's headers last said (None: not seen in the last few minutes).
        "daily_limit": daily.maximum if daily else None,
        "daily_remaining": daily.remaining if daily else None,
        "daily_reserve_reached": bool(daily and daily.reserve_reached),
        "account_used": use.account_used,
        "account_limit": use.account_limit.requests,
        "account_window_seconds": use.account_limit.window_seconds,
        "search_used": use.search_used,
        "search_limit": use.search_limit.requests,
        "search_window_seconds": use.search_limit.window_seconds,
        "paused_seconds": round(use.paused_seconds, 3),
    }


# ----------------------------------------------------------------------------- assessment

# A backlog that takes longer than this at the current pace is worth a look.
ETA_WARNING_SECONDS = 3600
# The scheduled sweep moves the watermark every RESYNC_INTERVAL_MINUTES; three missed is a problem.
MISSED_SWEEPS_WARNING = 3


def assess(status: Status, settings: Settings) -> list[dict[str, str]]:
    """Each problem with its level (`warning`, `critical`) and what to do, worst first."""
    problems: list[tuple[Health, str]] = []
    if status.backlog and status.pace_per_minute == 0 and status.running == 0:
        problems.append(
            (
                Health.CRITICAL,
                f"{status.backlog} handoff(s) queued and none finished in the last {PACE_MINUTES} "
                "minutes: start the workers (the Procfile's `worker`) or check their logs",
            )
        )
    elif status.eta_seconds is not None and status.eta_seconds > ETA_WARNING_SECONDS:
        problems.append(
            (
                Health.WARNING,
                f"the backlog of {status.backlog} takes about {_duration(status.eta_seconds)} at the pace of "
                f"the last {PACE_MINUTES} minutes: add workers, or raise HUBSPOT_RATE_LIMIT if the "
                "account allows more",
            )
        )
    if status.budget["daily_reserve_reached"]:
        problems.append(
            (
                Health.WARNING,
                f"HubSpot's daily budget is down to its reserve ({status.budget['daily_remaining']:,} of "
                f"{status.budget['daily_limit']:,} left): bulk work waits for tomorrow, live work goes on",
            )
        )
    if status.set_aside:
        problems.append(
            (
                Health.WARNING,
                f"{status.set_aside} queue message(s) were set aside (not runnable): `handoff-worker "
                "failures` lists them, `handoff-worker replay --message ID` queues one again",
            )
        )
    dead = sum(status.dead_letters.values())
    if dead:
        problems.append(
            (
                Health.WARNING,
                f"{dead} handoff(s) wait in the dead letter: `handoff-worker failures` says why, "
                "`handoff-worker replay` runs them again once fixed",
            )
        )
    past_sla = sum(w.past_sla for w in status.waiting.values())
    if past_sla:
        problems.append(
            (
                Health.WARNING,
                f"{past_sla} record(s) have waited for a lost reason longer than owner_tasks.sla_hours "
                f"({status.sla_hours:g} h): the owners were asked and the escalation sent; "
                "the reason is still missing",
            )
        )
    age = status.last_good_sweep_age_seconds
    limit = MISSED_SWEEPS_WARNING * settings.resync_interval_minutes * 60
    if age is not None and age > limit:
        problems.append(
            (
                Health.WARNING,
                f"the last resync sweep without a failure ended {_duration(age)} ago "
                f"(RESYNC_INTERVAL_MINUTES={settings.resync_interval_minutes}): check the `beat` and "
                "`sweeper` processes and their logs",
            )
        )
    problems.sort(key=lambda p: -p[0])
    return [{"level": level.name.lower(), "message": message} for level, message in problems]


def health(status: Status) -> Health:
    levels = {p["level"] for p in status.problems}
    if "critical" in levels:
        return Health.CRITICAL
    return Health.WARNING if "warning" in levels else Health.OK


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def format_duration(seconds: float | None) -> str:
    return "unknown" if seconds is None else _duration(seconds)


def outcome_label(outcome: str) -> str:
    """How an outcome reads on the status screen."""
    try:
        return {
            Outcome.HANDED_OFF: "handed off",
            Outcome.WAITING_FOR_REASON: "waiting for a reason",
            Outcome.PARTIAL_FAILURE: "failed (dead letter)",
            Outcome.ERROR: "HubSpot error (retried)",
            Outcome.UNKNOWN_STAGE: "unknown stage (dead letter)",
            Outcome.DEAL_OPEN: "deal open again",
            Outcome.DEAL_WON: "deal won",
            Outcome.DEAL_CLOSED_OTHER: "closed, excluded",
            Outcome.NOT_FOUND: "deleted in HubSpot",
            Outcome.NOT_UNQUALIFIED: "lead not unqualified",
            Outcome.DRY_RUN: "dry run",
        }[Outcome(outcome)]
    except ValueError:
        return outcome
