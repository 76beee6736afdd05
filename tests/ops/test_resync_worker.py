"""The scheduled sweep through a real Celery worker process: sweep task -> handoff tasks -> HubSpot."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from ops_support import OpsEnv, seed_lost_deal

from handoff_worker.celery_app import (
    BEAT_ENTRY,
    BULK_QUEUE,
    RESYNC_QUEUE,
    TASK_RESYNC_SWEEP,
    beat_schedule,
    create_celery,
)
from handoff_worker.handoff.resync import read_watermark
from handoff_worker.testing import stop_process

CELERY = Path(sys.executable).with_name("celery")
# One process, no cluster chatter: quick to start and stop.
WORKER_FLAGS = (
    "--pool",
    "solo",
    "--without-heartbeat",
    "--without-gossip",
    "--without-mingle",
    "-l",
    "WARNING",
)


@pytest.fixture
def worker(ops: OpsEnv, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, **ops.env(), "RESYNC_LOOKBACK_MINUTES": "10"}
    log = (tmp_path / "worker.log").open("wb")
    process = subprocess.Popen(
        [
            str(CELERY),
            "-A",
            "handoff_worker.beat",
            "worker",
            "-Q",
            f"{RESYNC_QUEUE},handoff,{BULK_QUEUE}",
            *WORKER_FLAGS,
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    process.log_path = tmp_path / "worker.log"  # type: ignore[attr-defined]  # read on failure
    yield process
    log.close()
    stop_process(process, timeout=20)


def _wait_for(condition: object, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.slow
def test_scheduled_sweep_task_hands_off_a_missed_deal_and_moves_the_watermark(
    ops: OpsEnv, worker: subprocess.Popen[bytes]
) -> None:
    seed_lost_deal(ops, "8301", "Competitor", {"8401": "salesqualifiedlead"})
    create_celery(ops.settings).send_task(TASK_RESYNC_SWEEP, queue=RESYNC_QUEUE)

    def handed_off() -> bool:
        contact = ops.server.control.object("contacts", "8401")
        return contact["properties"].get("lifecyclestage") == "lead"

    ok = _wait_for(handed_off)
    if not ok and worker.poll() is not None:
        log_path = worker.log_path  # type: ignore[attr-defined]  # set on the Popen by the fixture
        pytest.fail(f"the worker exited: {log_path.read_text()[-2000:]}")
    assert ok, "the sweep task did not hand off the missed deal"
    assert _wait_for(lambda: read_watermark(ops.redis) is not None, 10)
    assert "8401" in ops.server.control.enrollments()["5101"]["contactIds"]


def test_beat_schedule_fires_the_sweep_on_the_resync_queue_every_interval(ops: OpsEnv) -> None:
    schedule = beat_schedule(ops.settings)[BEAT_ENTRY]
    assert schedule["task"] == TASK_RESYNC_SWEEP
    assert schedule["schedule"] == timedelta(minutes=ops.settings.resync_interval_minutes)
    assert schedule["options"] == {
        "queue": RESYNC_QUEUE,
        "expires": ops.settings.resync_interval_minutes * 60,
    }
