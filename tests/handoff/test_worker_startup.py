"""A worker that cannot run handoffs refuses to start, with one line naming what to fix.

Before, such a worker said "ready" and acknowledged every task it could not run.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from worker_support import Worker

from handoff_worker.nurture_config.store import RedisLastGood
from handoff_worker.settings import Settings
from handoff_worker.startup import EXIT_CONFIG
from handoff_worker.testing import wait_until

pytestmark = pytest.mark.slow

BROKEN_YAML = "version: 1\nreasons: [\n"


def own_lines(output: str) -> list[str]:
    """The output's lines, less Celery's warning about running as root (tests may)."""
    root_warning = (
        "SecurityWarning",
        "absolutely not recommended",
        "--uid option",
        "User information",
        "_warn_or_raise",
    )
    return [line for line in output.splitlines() if line.strip() and not any(w in line for w in root_warning)]


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
