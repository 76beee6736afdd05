"""The deployment's state as Prometheus gauges, read from Redis at each scrape of a Celery worker's
/metrics: the same reading (`status.read_status`) the `status` command shows, so the numbers a
person reads and the numbers an alert fires on cannot drift apart.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from datetime import datetime

import redis
from celery import Celery
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from handoff_worker.settings import Settings
from handoff_worker.status import Status, read_status

log = logging.getLogger(__name__)


class StateCollector:
    """The deployment's state as Prometheus gauges, read from Redis when a scrape asks.

    Read at scrape time rather than counted, so every scrape of every worker reports the same
    numbers whatever process does the work (use `max` across instances, never `sum`). When Redis
    cannot be read, the scrape still answers, with `handoff_state_up 0`.
    """

    def __init__(
        self,
        client: redis.Redis,
        celery: Celery,
        settings: Settings,
        *,
        sla_hours: Callable[[], float | None] = lambda: None,
    ) -> None:
        self.client = client
        self.celery = celery
        self.settings = settings
        self.sla_hours = sla_hours

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("handoff_state_up", "1 when this scrape could read the state in Redis")
        try:
            status = read_status(self.client, self.celery, self.settings, sla_hours=self._sla())
        except Exception as exc:  # a scrape must answer: the failure is the metric
            log.warning("could not read the state for /metrics: %s (check REDIS_URL)", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from state_metrics(status)

    def _sla(self) -> float | None:
        try:
            return self.sla_hours()
        except Exception:  # the rules cannot be read now: nothing is past an SLA we cannot know
            return None


class EnvironmentStateCollector:
    """A `StateCollector` for the settings in the environment, built at the first scrape (a Celery
    worker registers it when it imports its tasks, before it reads anything)."""

    def __init__(self) -> None:
        self._collector: StateCollector | None = None

    def collect(self) -> Iterable[Metric]:
        if self._collector is None:
            try:
                self._collector = self._build()
            except Exception as exc:  # a setting is wrong: the scrape still answers, and says so
                log.warning("could not read the settings for /metrics: %s", exc)
                up = GaugeMetricFamily("handoff_state_up", "1 when this scrape could read the state in Redis")
                up.add_metric([], 0)
                return [up]
        return self._collector.collect()

    @staticmethod
    def _build() -> StateCollector:
        from handoff_worker.celery_app import create_celery
        from handoff_worker.nurture_config.store import RedisLastGood, RulesStore
        from handoff_worker.state import redis_client

        settings = Settings.from_env()
        client = redis_client(settings)
        rules = RulesStore(settings.handoff_config, last_good=RedisLastGood(client, settings.handoff_config))
        return StateCollector(
            client, create_celery(settings), settings, sla_hours=lambda: rules.current().owner_tasks.sla_hours
        )


def state_metrics(status: Status) -> Iterable[Metric]:
    queued = GaugeMetricFamily("handoff_queue_messages", "Messages waiting in each queue", labels=["queue"])
    for name, count in status.queued.items():
        queued.add_metric([name], count)
    yield queued
    yield _gauge(
        "handoff_messages_held_by_workers",
        "Messages delivered to a worker and not yet acknowledged: running, reserved, or held for a retry",
        status.held_by_workers,
    )
    yield _gauge("handoff_running", "Handoffs running now, in every worker", status.running)
    by_kind = {
        "handoff_waiting_for_reason": ("Lost records waiting for a lost reason", "count"),
        "handoff_waiting_for_reason_oldest_seconds": (
            "How long the record waiting longest for a reason has waited",
            "oldest_seconds",
        ),
        "handoff_waiting_for_reason_past_sla": (
            "Records waiting for a reason longer than the nurture YAML's owner_tasks.sla_hours",
            "past_sla",
        ),
    }
    for name, (help_text, attribute) in by_kind.items():
        family = GaugeMetricFamily(name, help_text, labels=["kind"])
        for kind, waiting in status.waiting.items():
            family.add_metric([kind], getattr(waiting, attribute))
        yield family
    dead = GaugeMetricFamily(
        "handoff_dead_letters",
        "Handoffs in the dead letter now, waiting for a fix and a replay",
        labels=["kind"],
    )
    for kind, count in status.dead_letters.items():
        dead.add_metric([kind], count)
    yield dead
    used = GaugeMetricFamily(
        "handoff_hubspot_budget_used", "Requests taken in the budget's current window", labels=["budget"]
    )
    limit = GaugeMetricFamily(
        "handoff_hubspot_budget_limit", "Requests the budget allows in one window", labels=["budget"]
    )
    for budget in ("account", "search"):
        used.add_metric([budget], status.budget[f"{budget}_used"])
        limit.add_metric([budget], status.budget[f"{budget}_limit"])
    yield used
    yield limit
    yield _gauge(
        "handoff_set_aside_messages",
        "Queue messages set aside because no worker could run them (see `handoff-worker failures`)",
        status.set_aside,
    )
    if status.budget["daily_limit"] is not None:
        yield _gauge(
            "handoff_hubspot_daily_remaining",
            "Requests left in the account's daily budget, as HubSpot's headers last said",
            status.budget["daily_remaining"],
        )
        yield _gauge(
            "handoff_hubspot_daily_limit",
            "The account's daily budget, as HubSpot's headers last said",
            status.budget["daily_limit"],
        )
    yield _gauge(
        "handoff_hubspot_budget_paused_seconds",
        "Seconds left of a pause every process keeps (HubSpot said the account is nearly spent)",
        status.budget["paused_seconds"],
    )
    yield _gauge(
        "handoff_backlog_eta_seconds",
        "Time to work off the queued handoffs at the pace of the last ten minutes (NaN: none finished)",
        math.nan if status.eta_seconds is None else status.eta_seconds,
    )
    if status.last_good_sweep is not None:
        yield _gauge(
            "handoff_resync_last_good_sweep_timestamp_seconds",
            "When the last resync sweep without a failure ended (its watermark)",
            datetime.fromisoformat(status.last_good_sweep).timestamp(),
        )


def _gauge(name: str, help_text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, help_text, value=value)
