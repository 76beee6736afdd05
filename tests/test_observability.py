"""What ops see, end to end: the sandbox sends signed webhooks to a real gunicorn web (two worker
processes), a real Celery worker (two pool processes) hands the deals off, and both /metrics (the
web's, the worker's --metrics-port) are scraped as Prometheus would. Their numbers add up across
processes, every name the shipped Grafana dashboard and alert rules use is in them, and the log
lines are JSON at LOG_LEVEL, with a dead letter as a WARNING that says what to do."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from prometheus_client.parser import text_string_to_metric_families

from handoff_worker.celery_app import HANDOFF_QUEUE, RESYNC_QUEUE, TASK_RESYNC_SWEEP, create_celery, queue_key
from handoff_worker.handoff.audit import recent_audits
from handoff_worker.handoff.lock import RUNNING_INDEX
from handoff_worker.handoff.resync.window import WATERMARK_KEY
from handoff_worker.sandbox.webhooks import DEFAULT_CLIENT_SECRET
from handoff_worker.settings import Settings
from handoff_worker.testing import free_port, wait_until

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DASHBOARD = ROOT / "docs/monitoring/grafana-dashboard.json"
ALERTS = ROOT / "docs/monitoring/prometheus-alerts.yml"
APP_ID = "424242"  # the sandbox fixture's: events caused by the worker's own writes are dropped

RULES = """\
version: 1
deals:
  reason_property: closed_lost_reason
owner_tasks:
  sla_hours: 24
reasons:
  Pricing:
    nurture:
      - workflow: 5102
        name: Pricing nurture
  Not Ready:
    nurture:
      - workflow: 5999
        name: Deleted workflow
"""
LOG_FIELDS = {"time", "level", "logger", "message", "process", "pid"}


class Service:
    """A process of the Procfile, started as the Procfile starts it, its stderr kept for reading."""

    stderr_path: Path

    def __init__(self, args: list[str], env: dict[str, str], log_dir: Path, name: str) -> None:
        self.stderr_path = log_dir / f"{name}.err"
        self._stderr = self.stderr_path.open("wb")
        self._stdout = (log_dir / f"{name}.out").open("wb")
        self.process = subprocess.Popen(args, env=env, stdout=self._stdout, stderr=self._stderr, cwd=ROOT)

    def log_lines(self) -> list[str]:
        return self.stderr_path.read_text().splitlines()

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._stderr.close()
        self._stdout.close()


def scrape(url: str) -> dict[str, float]:
    """Every sample of one scrape: `name{labels}` -> value."""
    with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310  # our own local endpoint
        text = answer.read().decode()
    return {
        sample.name + json.dumps(sample.labels, sort_keys=True): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(samples: dict[str, float], name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    found = 0.0
    for key, value in samples.items():
        sample_name, _, label_text = key.partition("{")
        if sample_name == name and labels.items() <= json.loads("{" + label_text).items():
            found += value
    return found


def names_used(text: str) -> set[str]:
    return set(re.findall(r"\bhandoff_[a-z0-9_]+\b", text))


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):  # noqa: S310  # our own local endpoint
            return True
    except OSError:
        return False


@pytest.fixture
def stack(sandbox: Any, redis_url: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    rules = tmp_path / "nurture.yaml"
    rules.write_text(RULES)
    web_port, ops_port, worker_port = free_port(), free_port(), free_port()
    webhook_url = f"http://127.0.0.1:{web_port}/webhooks/hubspot"
    base = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("HUBSPOT_", "LOG_", "PROMETHEUS_"))},
        "REDIS_URL": redis_url,
        "HUBSPOT_BASE_URL": sandbox.url,
        "HUBSPOT_ACCESS_TOKEN": "pat-test-token",
        "HUBSPOT_CLIENT_SECRET": DEFAULT_CLIENT_SECRET,
        "HUBSPOT_APP_ID": APP_ID,
        "HUBSPOT_RATE_LIMIT": "1000/1s",
        "WEBHOOK_PUBLIC_URL": webhook_url,
        "HANDOFF_CONFIG": str(rules),
    }
    web = Service(
        [str(BIN / "gunicorn"), "handoff_worker.wsgi:app", "-c", "handoff_worker/gunicorn_conf.py"],
        {
            **base,
            "PORT": str(web_port),
            "OPS_BIND": f"127.0.0.1:{ops_port}",
            "WEB_CONCURRENCY": "2",
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "web"),
        },
        tmp_path,
        "web",
    )
    # --loglevel INFO as an old Procfile had it: LOG_LEVEL is what counts.
    worker = Service(
        [
            *(str(BIN / "celery"), "-A", "handoff_worker.celery_app", "worker"),
            *("--hostname", "worker@observed", "--queues", f"handoff,{RESYNC_QUEUE}"),
            *("--pool", "prefork", "--concurrency", "2", "--loglevel", "INFO"),
            *("--without-gossip", "--without-mingle", "--without-heartbeat"),
            *("--metrics-port", f"127.0.0.1:{worker_port}"),
        ],
        # No PROMETHEUS_MULTIPROC_DIR: the worker makes its own (the web is given one).
        {**base, "LOG_LEVEL": "WARNING"},
        tmp_path,
        "worker",
    )
    services = {"web": web, "worker": worker}
    try:
        web_metrics = f"http://127.0.0.1:{ops_port}/metrics"
        worker_metrics = f"http://127.0.0.1:{worker_port}/metrics"
        wait_until(lambda: answers(web_metrics), timeout=60, what="the web to answer")
        wait_until(lambda: answers(worker_metrics), timeout=60, what="the worker's metrics endpoint")
        sandbox.control.configure(webhook_url=webhook_url)
        yield {"web_metrics": web_metrics, "worker_metrics": worker_metrics, **services}
    finally:
        for service in services.values():
            service.stop()


def test_what_ops_see_adds_up_across_processes(
    stack: dict[str, Any], sandbox: Any, redis_conn: redis.Redis, redis_url: str
) -> None:
    # The first read of deal 2001 meets five 429s: the gateway's retries give up, and the task
    # is retried by Celery after HubSpot's Retry-After.
    sandbox.control.set_faults(
        retry_after_s=1,
        fail_next=[{"count": 5, "status": 429, "path_prefix": "/crm/v3/objects/deals/2001"}],
    )
    sandbox.control.lose_deal("2001", "Pricing")
    sandbox.control.lose_deal("2002", "Not Ready")  # workflow 5999 does not exist: dead letter

    def outcomes() -> dict[str, str]:
        return {a["object_id"]: a["outcome"] for a in reversed(recent_audits(redis_conn, 1000))}

    wait_until(
        lambda: outcomes().get("2001") == "handed_off" and outcomes().get("2002") == "partial_failure",
        timeout=90,
        what="both deals handed off or dead-lettered",
    )
    sandbox.control.wait_for_webhooks(timeout=30)
    wait_until(lambda: not redis_conn.zcard(RUNNING_INDEX), what="no handoff running")

    audits = recent_audits(redis_conn, 1000)
    worker = scrape(stack["worker_metrics"])
    # Counted in two pool processes, served by the worker's main process: every run is there once,
    # and every HubSpot request of the runs (each run counted its own in its audit record).
    assert total(worker, "handoff_runs_total") == len(audits)
    assert total(worker, "handoff_runs_total", outcome="handed_off", reason="Pricing") == 1
    assert total(worker, "handoff_hubspot_requests_total") == sum(a["api_calls"] for a in audits)
    assert total(worker, "handoff_hubspot_rate_limited_total", endpoint="get deal") == 5
    assert total(worker, "handoff_task_retries_total", error="RateLimitedError") == 1
    assert total(worker, "handoff_dead_letters_recorded_total", kind="deal", permanent="true") == 1
    assert total(worker, "handoff_steps_total", step="workflow", result="done") == 2
    assert total(worker, "handoff_steps_total", step="workflow", result="failed") == 1

    # A scheduled sweep, so the last-good-sweep gauge has a value.
    sweep_app: Celery = create_celery(Settings.from_env({"REDIS_URL": redis_url}, dotenv_path=None))
    try:
        sweep_app.send_task(TASK_RESYNC_SWEEP, queue=RESYNC_QUEUE)
        wait_until(lambda: redis_conn.exists(WATERMARK_KEY), timeout=60, what="the resync sweep")
    finally:
        sweep_app.close()
    wait_until(
        lambda: not redis_conn.llen(queue_key(HANDOFF_QUEUE)) and not redis_conn.zcard(RUNNING_INDEX),
        what="the sweep's handoffs to run",
    )
    worker = scrape(stack["worker_metrics"])

    deliveries = sandbox.control.webhooks()["deliveries"]
    posted = sum(len(d["attempts"]) for d in deliveries)
    assert posted > 0
    seen: set[str] = set(worker)
    for _ in range(6):  # two gunicorn workers: whichever answers, the whole count
        web = scrape(stack["web_metrics"])
        seen |= set(web)
        assert total(web, "handoff_intake_requests_total") == posted
    # The deployment's state, read from Redis when the worker's endpoint is scraped.
    assert total(worker, "handoff_state_up") == 1
    assert total(worker, "handoff_dead_letters", kind="deal") == 1
    assert total(worker, "handoff_queue_messages", queue="handoff") == 0
    assert total(worker, "handoff_running") == 0

    scraped_names = {key.partition("{")[0] for key in seen}
    for document in (DASHBOARD, ALERTS):
        used = names_used(document.read_text())
        assert used, f"{document.name} uses no metric"
        missing = sorted(used - scraped_names)
        assert not missing, f"{document.name} uses metrics no process exports: {missing}"

    lines = stack["worker"].log_lines()
    # Python's own warning about running as root may come first, before logging is set up.
    first_json = next(i for i, line in enumerate(lines) if line.startswith("{"))
    records = [json.loads(line) for line in lines[first_json:] if line.strip()]
    assert records and all(record.keys() >= LOG_FIELDS for record in records)
    assert {record["process"] for record in records} == {"worker"}
    assert {record["level"] for record in records} <= {"WARNING", "ERROR", "CRITICAL"}  # LOG_LEVEL
    dead = [r for r in records if r.get("dead_letter")]
    assert dead and dead[0]["level"] == "WARNING"
    assert "handoff-worker replay --deal 2002" in dead[0]["message"]
    assert dead[0]["task_id"] and dead[0]["task"] == "handoff_worker.handoff_deal"
    assert "pat-test-token" not in stack["worker"].stderr_path.read_text()

    # Outside logging: the start-up checks' one plain line for a person, and Python's own warnings
    # (gevent's monkey-patching, at each worker's boot) with their source line. All else is JSON.
    web_lines = [line for line in stack["web"].log_lines() if line.strip()]
    not_logging = re.compile(r"^(handoff-worker web: |\S+\.py:\d+: \w*Warning: |\s)")
    assert all(line.startswith("{") or not_logging.match(line) for line in web_lines), web_lines
    web_records = [json.loads(line) for line in web_lines if line.startswith("{")]
    assert web_records and all(record.keys() >= LOG_FIELDS for record in web_records)
    assert {record["process"] for record in web_records} == {"web"}
    assert any(record["logger"] == "gunicorn.error" for record in web_records)  # gunicorn's own lines


def test_alert_rules_and_dashboard_are_well_formed() -> None:
    from ruamel.yaml import YAML

    rules = YAML(typ="safe").load(ALERTS.read_text())
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    assert {"HandoffDeadLettersRising", "HandoffWaitingForReasonPastSLA", "HandoffHubSpotRateLimited"} <= {
        alert["alert"] for alert in alerts
    }
    assert any("queue" in alert["alert"].lower() for alert in alerts)
    for alert in alerts:
        assert alert["expr"] and alert["labels"]["severity"] in {"warning", "critical"}, alert
        assert alert["annotations"]["summary"], alert
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert expressions and all(names_used(expr) for expr in expressions)
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])


def test_a_metrics_worker_is_told_from_its_command_line() -> None:
    from handoff_worker.celery_process import metrics_worker_role

    celery = ["celery", "-A", "handoff_worker.celery_app"]
    assert (
        metrics_worker_role([*celery, "worker", "--hostname", "sweeper@h", "--metrics-port", "9102"])
        == "sweeper"
    )
    assert metrics_worker_role([*celery, "worker", "-n=worker@h", "--metrics-port=9101"]) == "worker"
    assert metrics_worker_role([*celery, "worker", "--metrics-port", "9101"]) == "worker"
    assert metrics_worker_role([*celery, "worker", "--hostname", "worker@h"]) is None
    assert metrics_worker_role([*celery, "beat"]) is None
    assert metrics_worker_role(["gunicorn", "handoff_worker.wsgi:app"]) is None
