"""What a Celery process (the Procfile's worker, sweeper and beat) sets up when it starts.

- Logs: every line in the format every process shares (`handoff_worker.logs`: JSON unless
  LOG_FORMAT=text) from LOG_LEVEL up, instead of Celery's own text at `--loglevel`; a line written
  inside a task names the task and its id.
- Metrics: `celery worker --metrics-port [HOST:]PORT` serves the worker's /metrics from its main
  process, adding up what every pool process counted, with the deployment's state read from Redis
  (`worker_metrics`). The pool's processes count in their own memory: when celery_app is imported
  by such a worker, before its tasks and its pool, it takes a multiprocess directory of its own
  (`metrics_dir.use_multiprocess_dir`), which the pool processes inherit.
- Retries: each retry a task schedules is counted (`handoff_task_retries_total`).

`install` adds the option and the step to an app; the signal handlers below are connected when this
module is imported, which `celery_app` does.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import click
from celery import Celery, bootsteps, signals
from celery._state import get_current_task

log = logging.getLogger(__name__)

METRICS_PORT_OPTION = "--metrics-port"
DEFAULT_METRICS_HOST = "0.0.0.0"  # noqa: S104  # scraped from another host, like the web's /metrics

_worker_role: str | None = None


def install(app: Celery) -> None:
    """`celery worker --metrics-port` on this app, and the step that serves it."""
    app.user_options["worker"].add(
        click.Option(
            [METRICS_PORT_OPTION],
            default=None,
            metavar="[HOST:]PORT",
            help="Serve this worker's Prometheus metrics at http://HOST:PORT/metrics "
            "(needs PROMETHEUS_MULTIPROC_DIR: one empty directory per worker).",
        )
    )
    app.steps["worker"].add(MetricsEndpoint)


def metrics_address(value: str) -> tuple[str, int]:
    """`9101` or `127.0.0.1:9101` -> (host, port); a clear error for anything else."""
    host, _, port = value.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(
            f"{value!r} is not a port: give PORT or HOST:PORT, e.g. {METRICS_PORT_OPTION} 9101",
            param_hint=METRICS_PORT_OPTION,
        )
    return host or DEFAULT_METRICS_HOST, int(port)


class MetricsEndpoint(bootsteps.StartStopStep):
    """The worker's /metrics, served by its main process for as long as the worker runs."""

    label = "metrics endpoint"

    def __init__(self, parent: Any, metrics_port: str | None = None, **options: Any) -> None:
        super().__init__(parent, **options)
        self.address = metrics_address(str(metrics_port)) if metrics_port else None
        self.server: Any = None
        if self.address is not None:
            from handoff_worker import metrics_dir

            if not metrics_dir.multiprocess_dir():
                # Only a worker embedded in another program gets here (the celery command sets it).
                raise SystemExit(
                    f"{METRICS_PORT_OPTION}: PROMETHEUS_MULTIPROC_DIR is not set, so the pool's counts "
                    "cannot reach this process: set it to an empty directory of this worker's own"
                )

    def start(self, parent: Any) -> None:
        if self.address is None:
            return
        from prometheus_client import start_http_server

        from handoff_worker import metrics

        host, port = self.address
        # What the pool processes counted, and the state read from Redis (worker_metrics).
        self.server, _ = start_http_server(port, addr=host, registry=metrics.scrape_registry())
        log.info("serving metrics", extra={"metrics_url": f"http://{host}:{port}/metrics"})

    def stop(self, parent: Any) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def metrics_worker_role(argv: list[str]) -> str | None:
    """The role (`worker`, `sweeper`: the node name before `@`) of a `celery worker` started with
    --metrics-port, from its command line; None for any other process."""
    words = argv[1:]
    if "worker" not in words or not any(w.partition("=")[0] == METRICS_PORT_OPTION for w in words):
        return None
    for i, word in enumerate(words):
        name, _, value = word.partition("=")
        if name in ("--hostname", "-n"):
            node = value or (words[i + 1] if i + 1 < len(words) else "")
            return node.partition("@")[0] or "worker"
    return "worker"


# The celery command imports the tasks (and so the metrics) before any worker signal is sent: a
# worker that serves metrics takes its multiprocess directory now, when celery_app is imported.
_started_as = metrics_worker_role(sys.argv)
if _started_as is not None:
    from handoff_worker import logs as _logs
    from handoff_worker import metrics_dir as _metrics_dir

    _logs.set_process_role(_started_as)
    _metrics_dir.use_multiprocess_dir(_started_as)


@signals.celeryd_init.connect
def _worker_starting(sender: str | None = None, **_: Any) -> None:
    """Before the worker forks its pool: its name in every log line."""
    global _worker_role
    _worker_role = (sender or "worker").partition("@")[0] or "worker"
    from handoff_worker import logs

    logs.set_process_role(_worker_role)


@signals.setup_logging.connect
def _configure_logging(**_: Any) -> None:
    """Celery hands logging to us (it configures nothing when a handler of this signal exists)."""
    from handoff_worker import logs
    from handoff_worker.errors import HandoffError
    from handoff_worker.settings import Settings

    root = logging.getLogger()
    if any(not isinstance(h, logging.NullHandler) for h in root.handlers):
        return  # a program that embeds a worker (the demo) configured its own logging
    role = _worker_role or ("beat" if _runs_beat() else "worker")
    try:
        settings = Settings.from_env()
    except HandoffError as exc:
        logs.configure_logging("INFO", "json", role=role)
        log.error("%s", exc)
        return
    logs.configure_logging(settings.log_level, settings.log_format or "json", role=role)
    for handler in root.handlers:
        handler.addFilter(_TaskContext())


def _runs_beat() -> bool:
    import sys

    return "beat" in sys.argv[1:]


class _TaskContext(logging.Filter):
    """Adds the running task's name and id to the lines written inside it."""

    def filter(self, record: logging.LogRecord) -> bool:
        task = get_current_task()
        if task is not None and getattr(task.request, "id", None):
            record.task = task.name
            record.task_id = task.request.id
        return True


@signals.task_retry.connect
def _count_retry(sender: Any = None, reason: Any = None, **_: Any) -> None:
    from handoff_worker import metrics

    cause = getattr(reason, "exc", None) or reason
    task = str(getattr(sender, "name", "") or "").rpartition(".")[2] or "unknown"
    metrics.TASK_RETRIES.labels(task=task, error=type(cause).__name__).inc()


@signals.worker_process_shutdown.connect
def _pool_process_ended(pid: int | None = None, **_: Any) -> None:
    from handoff_worker import metrics

    metrics.mark_process_dead(pid or os.getpid())
