"""The deployment's state on every Celery worker's /metrics (`celery worker --metrics-port`).

Imported by the worker with its tasks (celery_app's `include`), so its main process, which serves
the endpoint, adds the gauges read from Redis at each scrape (queues, running, waiting for a
reason, dead letters, budget, ETA) to what its pool processes counted. The web process stays free
of the handoff code: its /metrics has the intake's counters.
"""

from __future__ import annotations

from handoff_worker import metrics
from handoff_worker.state_gauges import EnvironmentStateCollector

STATE = EnvironmentStateCollector()
metrics.add_scrape_collector(STATE)
