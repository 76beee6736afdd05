"""Prometheus metrics of the worker side, and the one way every process renders a scrape.

Counters and histograms live in the process that counts (a gunicorn worker, a Celery pool
process). With several such processes, prometheus-client's multiprocess mode adds them up: every
process of one group (the web's gunicorn workers, one Celery worker's pool) writes its samples to
files in PROMETHEUS_MULTIPROC_DIR, and whichever process answers a scrape reads them all. The
group's parent sets that directory (its own, emptied) before the first process counts anything
(`metrics_dir.use_multiprocess_dir`), unless the environment names one.

What is true of the whole deployment rather than of one process (queue depths, deals waiting for a
reason, dead letters held, the budget in use) is not counted here: it is read from Redis when a
scrape asks (`state_gauges.StateCollector`, added with `add_scrape_collector`), so it is right whichever
process answers and however many there are.

This module imports nothing of ours: every layer may count.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from handoff_worker.metrics_dir import multiprocess_dir

# A process of the group may count before the group's start-up hook ran (a command run by hand with
# the variable exported): it must find the directory rather than fail on its first count.
if multiprocess_dir():
    Path(multiprocess_dir() or ".").mkdir(parents=True, exist_ok=True)

# ----------------------------------------------------------------------------- handoffs

HANDOFF_RUNS = Counter(
    "handoff_runs",
    "Handoff runs finished, by record kind, outcome and lost reason (the YAML's label; empty when none)",
    ["kind", "outcome", "reason"],
)
HANDOFF_RUN_SECONDS = Histogram(
    "handoff_run_seconds",
    "Time one handoff run took, HubSpot calls and rate-limit waits included",
    ["kind"],
    buckets=(0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
)
HANDOFF_STEPS = Counter(
    "handoff_steps",
    "Steps done or failed for contacts: lifecycle, workflow, list, property nurtures, owner tasks",
    ["step", "result"],
)
TASK_RETRIES = Counter(
    "handoff_task_retries",
    "Handoff tasks scheduled to run again after an error, by task and error type",
    ["task", "error"],
)
DEAD_LETTERS_RECORDED = Counter(
    "handoff_dead_letters_recorded",
    "Handoffs put in the dead letter (each failure, also of a record already there), "
    "by kind and whether only a fix of config or data helps",
    ["kind", "permanent"],
)

# ----------------------------------------------------------------------------- HubSpot

HUBSPOT_REQUESTS = Counter(
    "handoff_hubspot_requests",
    "HubSpot requests sent, by endpoint and answer (HTTP status, or `error` when none came back)",
    ["endpoint", "status"],
)
HUBSPOT_RATE_LIMITED = Counter(
    "handoff_hubspot_rate_limited",
    "HubSpot answers 429 (rate or daily limit reached), by endpoint",
    ["endpoint"],
)
HUBSPOT_REQUEST_SECONDS = Histogram(
    "handoff_hubspot_request_seconds",
    "Time one HubSpot request took to answer, by endpoint",
    ["endpoint"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
HUBSPOT_BUDGET_WAIT_SECONDS = Counter(
    "handoff_hubspot_budget_wait_seconds",
    "Seconds spent waiting for a slot of the account's shared rate budget before a request",
)

_DIGITS = re.compile(r"\s*\b\d+\b")


def endpoint_label(operation: str) -> str:
    """An operation's name without the ids in it (`enroll contact in workflow 5102` ->
    `enroll contact in workflow`): one time series per kind of call, however many records."""
    return _DIGITS.sub("", operation).strip() or "other"


# ----------------------------------------------------------------------------- scraping

_scrape_collectors: list[Collector] = []


def add_scrape_collector(collector: Collector) -> None:
    """Add what a scrape computes when it is asked (read from Redis): registered once per process."""
    if collector not in _scrape_collectors:
        _scrape_collectors.append(collector)


class _Collected:
    """Wraps the metrics of this process or of its group for a registry built per scrape."""

    def __init__(self, source: Iterable[Collector]) -> None:
        self.source = list(source)

    def collect(self) -> Iterable[Metric]:
        for collector in self.source:
            yield from collector.collect()


def scrape_registry(*, state: bool = True) -> CollectorRegistry:
    """A registry holding every counted metric of the process group (its multiprocess files, or this
    process's own registry without PROMETHEUS_MULTIPROC_DIR) and, with `state`, what the added
    scrape collectors read. Its `collect()` reads them anew on every scrape."""
    registry = CollectorRegistry(auto_describe=False)
    if multiprocess_dir():
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_Collected([REGISTRY]))
    if state:
        registry.register(_Collected(_scrape_collectors))
    return registry


def render() -> tuple[bytes, str]:
    """The exposition text of a scrape and its content type."""
    return generate_latest(scrape_registry()), CONTENT_TYPE_LATEST


def mark_process_dead(pid: int) -> None:
    """A process of the group ended: its live gauges no longer count (its counters still do)."""
    if multiprocess_dir():
        multiprocess.mark_process_dead(pid)
