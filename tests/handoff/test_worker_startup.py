"""A worker that cannot run handoffs refuses to start, with one line naming what to fix.

Before, such a worker said "ready" and acknowledged every task it could not run.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from worker_support import CELERY, Worker

from handoff_worker.nurture_config.store import RedisLastGood
from handoff_worker.settings import Settings
from handoff_worker.startup import EXIT_CONFIG
from handoff_worker.testing import own_lines, wait_until

pytestmark = pytest.mark.slow

BROKEN_YAML = "version: 1\nreasons: [\n"


def refused(worker: Worker) -> list[str]:
    worker.process.wait(timeout=60)
    worker.stop()
    lines = own_lines(worker.output())
    assert worker.process.returncode == EXIT_CONFIG, lines
    assert len(lines) == 1, lines
    assert lines[0].startswith("handoff-worker worker not started: ")
    return lines


def test_worker_without_a_token_exits_with_one_line(
    settings_for: Callable[..., Settings], tmp_path: Path
) -> None:
    worker = Worker(
        settings_for(), tmp_path / "worker.log", env={"HUBSPOT_ACCESS_TOKEN": None}, wait_ready=False
    )
    (line,) = refused(worker)
    assert "HUBSPOT_ACCESS_TOKEN is not set" in line


def test_worker_with_broken_rules_and_no_last_good_copy_exits_with_one_line(
    settings_for: Callable[..., Settings], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(BROKEN_YAML)
    worker = Worker(settings_for(HANDOFF_CONFIG=str(broken)), tmp_path / "worker.log", wait_ready=False)
    (line,) = refused(worker)
    assert str(broken) in line and "YAML syntax error at line 3" in line


def test_worker_with_broken_rules_starts_on_the_last_good_copy(
    settings_for: Callable[..., Settings], rules_path: Path, tmp_path: Path, redis_conn: redis.Redis
) -> None:
    RedisLastGood(redis_conn, rules_path).save(rules_path.read_text())
    rules_path.write_text(BROKEN_YAML)
    worker = Worker(settings_for(), tmp_path / "worker.log", wait_ready=False)
    try:
        wait_until(lambda: "ready." in worker.output(), what="the worker to start on the last good rules")
        assert worker.process.poll() is None
    finally:
        worker.stop()


def test_worker_with_a_bad_setting_exits_with_one_line_naming_it(
    settings_for: Callable[..., Settings], tmp_path: Path
) -> None:
    # Read while `celery -A` imports the app, before the worker's own check: it used to end in
    # a page of import traceback.
    worker = Worker(
        settings_for(), tmp_path / "worker.log", env={"HUBSPOT_RATE_LIMIT": "bogus"}, wait_ready=False
    )
    (line,) = refused(worker)
    assert "HUBSPOT_RATE_LIMIT='bogus'" in line


def test_beat_with_a_bad_setting_exits_with_one_line_naming_it(
    settings_for: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = settings_for()
    env = {
        **os.environ,
        "REDIS_URL": settings.redis_url,
        "HANDOFF_CONFIG": str(settings.handoff_config),
        "RESYNC_INTERVAL_MINUTES": "often",
    }
    beat = subprocess.run(
        [CELERY, "-A", "handoff_worker.celery_app", "beat", "--schedule", str(tmp_path / "beat")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = own_lines(beat.stdout + beat.stderr)
    assert beat.returncode == EXIT_CONFIG, lines
    assert len(lines) == 1, lines
    assert lines[0].startswith("handoff-worker beat not started: ")
    assert "RESYNC_INTERVAL_MINUTES" in lines[0]
