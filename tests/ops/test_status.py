"""`handoff-worker status` and the state gauges of /metrics, over a real Redis holding real queued
Celery messages, ledger records, dead letters and run tallies (no worker consumes the queue here)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from celery import Celery
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from handoff_worker.celery_app import HANDOFF_QUEUE, RESYNC_QUEUE, TASK_HANDOFF_DEAL, create_celery
from handoff_worker.domain.models import RecordKind
from handoff_worker.handoff.audit import record_audit
from handoff_worker.handoff.deadletter import record_failure
from handoff_worker.handoff.ledger import Ledger, Waiting
from handoff_worker.handoff.lock import RecordLock
from handoff_worker.handoff.resync.window import write_watermark
from handoff_worker.hubspot.ratelimit import RedisRateLimiter
from handoff_worker.setaside import set_aside
from handoff_worker.settings import Settings
from handoff_worker.state_gauges import StateCollector
from handoff_worker.status import read_status

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "config" / "nurture.yaml"  # owner_tasks.sla_hours: 24


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings.from_env({"REDIS_URL": redis_url, "HANDOFF_CONFIG": str(RULES)}, dotenv_path=None)


@pytest.fixture
def celery(settings: Settings) -> Iterator[Celery]:
    app = create_celery(settings)
    yield app
    app.close()


def run_status(redis_url: str, *args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """The command as ops run it: its own process, settings from the environment."""
    return subprocess.run(
        [sys.executable, "-m", "handoff_worker", "status", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"REDIS_URL": redis_url, "HANDOFF_CONFIG": str(RULES), "PATH": "/usr/bin:/bin"},
        timeout=60,
        check=False,
    )


def queue_deals(celery: Celery, count: int, queue: str = HANDOFF_QUEUE) -> None:
    for n in range(count):
        celery.send_task(
            TASK_HANDOFF_DEAL, kwargs={"deal_id": str(9000 + n), "trigger": "webhook"}, queue=queue
        )


def finished_runs(
    client: redis.Redis, count: int, *, outcome: str, minutes_ago: float, api_calls: int = 8
) -> None:
    at = (datetime.now(UTC) - timedelta(minutes=minutes_ago)).timestamp()
    for _ in range(count):
        record_audit(client, {"kind": "deal", "outcome": outcome, "api_calls": api_calls}, now=at)


def test_nothing_to_do_is_ok(redis_url: str, tmp_path: Path) -> None:
    result = run_status(redis_url, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "status: OK" in result.stdout
    assert "queued" in result.stdout and "failed (dead letters)" in result.stdout


def test_a_busy_deployment_is_read_in_full(
    redis_url: str, redis_conn: redis.Redis, celery: Celery, settings: Settings, tmp_path: Path
) -> None:
    queue_deals(celery, 30)
    queue_deals(celery, 1, queue=RESYNC_QUEUE)
    finished_runs(redis_conn, 20, outcome="handed_off", minutes_ago=1)
    finished_runs(redis_conn, 5, outcome="waiting_for_reason", minutes_ago=3, api_calls=2)
    finished_runs(redis_conn, 7, outcome="handed_off", minutes_ago=40)  # in the hour, not in the pace
    finished_runs(redis_conn, 50, outcome="handed_off", minutes_ago=90)  # older than an hour
    ledger = Ledger(redis_conn)
    now = datetime.now(UTC)
    ledger.set_waiting(
        Waiting(RecordKind.DEAL, "2001", (now - timedelta(hours=30)).isoformat(), "deal:2001:1", "", "")
    )
    ledger.set_waiting(
        Waiting(RecordKind.DEAL, "2002", (now - timedelta(hours=2)).isoformat(), "deal:2002:1", "", "")
    )
    ledger.set_waiting(
        Waiting(RecordKind.CONTACT, "3001", (now - timedelta(hours=1)).isoformat(), "contact:3001:1", "", "")
    )
    record_failure(
        redis_conn,
        RecordKind.DEAL,
        "2003",
        error="workflow 5999 not found",
        attempts=1,
        now=now,
        permanent=True,
    )
    write_watermark(redis_conn, now - timedelta(minutes=5))

    with RecordLock(redis_conn, RecordKind.DEAL, "2004"):
        result = run_status(redis_url, "--json", tmp_path=tmp_path)
    reading = json.loads(result.stdout)

    assert result.returncode == 1, result.stderr  # warnings: a dead letter, a record past the SLA
    assert reading["health"] == "warning"
    assert reading["queued"] == {HANDOFF_QUEUE: 30, "handoff_bulk": 0, RESYNC_QUEUE: 1}
    assert reading["backlog"] == 30  # the sweep is not a handoff
    assert reading["running"] == 1
    assert reading["last_hour"] == {"handed_off": 27, "waiting_for_reason": 5}
    assert reading["done_last_hour"] == 32
    assert reading["api_calls_last_hour"] == 27 * 8 + 5 * 2
    # 25 runs in the last ten minutes: about 2.5 a minute, so 30 queued take about 12 minutes.
    assert 2.4 <= reading["pace_per_minute"] <= 2.8
    assert 30 / 2.8 * 60 <= reading["eta_seconds"] <= 30 / 2.4 * 60
    assert reading["waiting"]["deal"]["count"] == 2
    assert reading["waiting"]["deal"]["past_sla"] == 1
    assert 30 * 3600 - 60 <= reading["waiting"]["deal"]["oldest_seconds"] <= 30 * 3600 + 60
    assert reading["waiting"]["contact"] == {
        "count": 1,
        "oldest_seconds": pytest.approx(3600, abs=60),
        "past_sla": 0,
        "escalated": 0,
    }
    assert reading["dead_letters"] == {"deal": 1, "contact": 0}
    assert reading["budget"]["account_limit"] == 100
    levels = [p["level"] for p in reading["problems"]]
    assert levels == ["warning", "warning"]
    assert "dead letter" in reading["problems"][0]["message"]
    assert "sla_hours" in reading["problems"][1]["message"]

    screen = run_status(redis_url, tmp_path=tmp_path)
    assert screen.returncode == 1
    assert "status: WARNING" in screen.stdout
    assert "past the 24 h SLA" in screen.stdout
    assert "`handoff-worker failures`" in screen.stdout


def test_work_queued_and_nothing_finishing_is_critical(
    redis_url: str, redis_conn: redis.Redis, celery: Celery, tmp_path: Path
) -> None:
    queue_deals(celery, 3)
    finished_runs(redis_conn, 4, outcome="handed_off", minutes_ago=20)  # workers stopped since
    result = run_status(redis_url, "--json", tmp_path=tmp_path)
    reading = json.loads(result.stdout)
    assert result.returncode == 2
    assert reading["eta_seconds"] is None
    assert reading["problems"][0]["level"] == "critical"
    assert "none finished in the last 10 minutes" in reading["problems"][0]["message"]


def test_redis_unreachable_is_cannot_tell(tmp_path: Path) -> None:
    result = run_status("redis://127.0.0.1:1/0", tmp_path=tmp_path)
    assert result.returncode == 3
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("handoff-worker status: cannot reach Redis at redis://127.0.0.1:1/0")
    assert "Traceback" not in result.stderr


def test_a_bad_setting_is_cannot_tell_naming_it(redis_url: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "handoff_worker", "status"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"REDIS_URL": redis_url, "LOG_LEVEL": "verbose", "PATH": "/usr/bin:/bin"},
        timeout=60,
        check=False,
    )
    assert result.returncode == 3
    assert "LOG_LEVEL='verbose' is not a log level" in result.stderr
    assert "Traceback" not in result.stderr


def scrape(collector: StateCollector) -> dict[str, float]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    text = generate_latest(registry).decode()
    return {
        sample.name + json.dumps(sample.labels, sort_keys=True): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_the_state_gauges_are_the_status_reading(
    redis_conn: redis.Redis, celery: Celery, settings: Settings
) -> None:
    queue_deals(celery, 4)
    finished_runs(redis_conn, 10, outcome="handed_off", minutes_ago=2)
    now = datetime.now(UTC)
    Ledger(redis_conn).set_waiting(
        Waiting(RecordKind.DEAL, "2001", (now - timedelta(hours=25)).isoformat(), "deal:2001:1", "", "")
    )
    record_failure(redis_conn, RecordKind.CONTACT, "3001", error="HTTP 500", attempts=9, now=now)
    samples = scrape(StateCollector(redis_conn, celery, settings, sla_hours=lambda: 24.0))
    reading = read_status(redis_conn, celery, settings, sla_hours=24.0)

    assert samples["handoff_state_up{}"] == 1
    assert samples['handoff_queue_messages{"queue": "handoff"}'] == 4
    assert samples['handoff_waiting_for_reason{"kind": "deal"}'] == 1
    assert samples['handoff_waiting_for_reason_past_sla{"kind": "deal"}'] == 1
    assert samples['handoff_waiting_for_reason_oldest_seconds{"kind": "deal"}'] == pytest.approx(
        25 * 3600, abs=60
    )
    assert samples['handoff_dead_letters{"kind": "contact"}'] == 1
    assert samples['handoff_hubspot_budget_limit{"budget": "account"}'] == 100
    assert samples["handoff_backlog_eta_seconds{}"] == pytest.approx(reading.eta_seconds, rel=0.1)


def test_a_scrape_with_redis_down_still_answers(settings: Settings) -> None:
    down = Settings.from_env({"REDIS_URL": "redis://127.0.0.1:1/0"}, dotenv_path=None)
    client = redis.Redis.from_url(down.redis_url, socket_connect_timeout=0.5, socket_timeout=0.5)
    app = create_celery(down)
    try:
        samples = scrape(StateCollector(client, app, down))
    finally:
        app.close()
    assert samples == {"handoff_state_up{}": 0}


def test_the_daily_reserve_and_set_aside_messages_are_warnings(
    redis_url: str, redis_conn: redis.Redis, settings: Settings, tmp_path: Path
) -> None:
    limiter = RedisRateLimiter(redis_conn, settings.rate_limit, settings.search_rate_limit)
    limiter.record_daily(250_000, 40_000)  # under the default 20 % reserve
    set_aside(
        redis_conn,
        message_id="m-1",
        queue="handoff",
        reason="not a task message Celery can run",
        now=datetime.now(UTC),
        raw="{not json",
    )
    result = run_status(redis_url, "--json", tmp_path=tmp_path)
    reading = json.loads(result.stdout)
    assert result.returncode == 1, result.stderr
    assert reading["set_aside"] == 1
    assert reading["budget"]["daily_remaining"] == 40_000
    assert reading["budget"]["daily_reserve_reached"] is True
    messages = " ".join(p["message"] for p in reading["problems"])
    assert "daily budget is down to its reserve" in messages and "set aside" in messages
    screen = run_status(redis_url, tmp_path=tmp_path).stdout
    assert "HubSpot daily budget left" in screen and "set-aside queue messages" in screen
