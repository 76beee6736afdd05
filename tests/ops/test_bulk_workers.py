"""Live work first, over real worker processes: the Procfile's `worker` (queue handoff) and `bulk`
(queue handoff_bulk) beside each other, sharing one budget through Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from ops_support import OpsEnv, build_env, recent_window, seed_lost_deal

from handoff_worker.beat import QueueingSink
from handoff_worker.celery_app import (
    BULK_QUEUE,
    HANDOFF_QUEUE,
    TASK_HANDOFF_DEAL,
    create_celery,
    queue_key,
)
from handoff_worker.domain.models import WorkClass
from handoff_worker.handoff.audit import recent_audits
from handoff_worker.handoff.resync import Resync, ResyncRequest, run_locked
from handoff_worker.hubspot.ratelimit import work_class
from handoff_worker.pending import pending_mark
from handoff_worker.sandbox.testing import SandboxServer

CELERY = Path(sys.executable).with_name("celery")
# Slow enough that a backlog of 30 deals takes far longer than one live handoff.
BUDGET = "20/2s"
BACKLOG = [str(9000 + i) for i in range(30)]


@pytest.fixture
def slow_ops(redis_url: str) -> Iterator[OpsEnv]:
    server = SandboxServer.start(rate_limit=BUDGET)
    env = build_env(server, redis_url, HUBSPOT_RATE_LIMIT=BUDGET)
    yield env
    env.redis.close()
    server.stop()


@pytest.fixture
def start_worker(slow_ops: OpsEnv, tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(queue: str, **env: str) -> subprocess.Popen[bytes]:
        log = (tmp_path / f"{queue}.log").open("wb")
        process = subprocess.Popen(
            [
                *(str(CELERY), "-A", "handoff_worker.celery_app", "worker", "-Q", queue),
                *("--pool", "solo", "--without-heartbeat", "--without-gossip", "--without-mingle"),
                *("--hostname", f"{queue}@test", "-l", "WARNING"),
            ],
            env={**os.environ, **slow_ops.env(), **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()  # a bulk process may be pausing for the daily reserve: no need to wait
        process.wait()


def handed_off(ops: OpsEnv) -> dict[str, str]:
    """Deal id -> trigger of every finished handoff."""
    return {
        str(a["object_id"]): str(a["trigger"])
        for a in recent_audits(ops.redis, 1000)
        if a.get("outcome") == "handed_off"
    }


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def queue_backlog(ops: OpsEnv) -> None:
    for deal_id in BACKLOG:
        seed_lost_deal(ops, deal_id, "Competitor", {f"1{deal_id}": "salesqualifiedlead"})
    resync = Resync(ops.gateway, ops.rules, QueueingSink(create_celery(ops.settings), ops.redis))
    since, until = recent_window()
    with work_class(WorkClass.BULK):
        summary = run_locked(ops.redis, resync, ResyncRequest(since, until, include_contacts=False))
    assert summary.queued == len(BACKLOG)
    assert ops.redis.llen(queue_key(BULK_QUEUE)) == len(BACKLOG)
    assert ops.redis.llen(queue_key(HANDOFF_QUEUE)) == 0


def lose_live_deal(ops: OpsEnv) -> None:
    seed_lost_deal(ops, "9999", "Competitor", {"19999": "salesqualifiedlead"})
    create_celery(ops.settings).send_task(
        TASK_HANDOFF_DEAL, kwargs={"deal_id": "9999", "trigger": "webhook"}, queue=HANDOFF_QUEUE
    )


@pytest.mark.slow
def test_a_live_handoff_does_not_wait_behind_a_bulk_backlog(
    slow_ops: OpsEnv, start_worker: Callable[..., subprocess.Popen[bytes]]
) -> None:
    queue_backlog(slow_ops)
    start_worker(HANDOFF_QUEUE)
    start_worker(BULK_QUEUE)
    wait_for(lambda: len(handed_off(slow_ops)) >= 2, "the backlog to start moving")
    lose_live_deal(slow_ops)
    wait_for(lambda: "9999" in handed_off(slow_ops), "the live handoff")
    bulk_done = [d for d in handed_off(slow_ops) if d in BACKLOG]
    # The live deal ran beside the backlog, not behind it: most of the backlog was still queued.
    assert len(bulk_done) < len(BACKLOG) - 5, bulk_done
    wait_for(lambda: all(d in handed_off(slow_ops) for d in BACKLOG), "the whole backlog", timeout=300)
    assert {handed_off(slow_ops)[d] for d in BACKLOG} == {"resync"}


@pytest.mark.slow
def test_bulk_work_stops_at_the_daily_reserve_and_live_work_goes_on(
    slow_ops: OpsEnv, start_worker: Callable[..., subprocess.Popen[bytes]]
) -> None:
    queue_backlog(slow_ops)  # 30 handoffs of several calls each: far beyond what the day leaves
    slow_ops.server.control.configure(rate_limit=BUDGET, daily_limit=60)
    start_worker(BULK_QUEUE, HANDOFF_DAILY_RESERVE="0.5")
    # Bulk work spends half the day (30 calls) and stops: a handoff meets the reserve and waits.
    wait_for(
        lambda: any(
            a.get("outcome") == "error" and "HANDOFF_DAILY_RESERVE" in str(a.get("errors"))
            for a in recent_audits(slow_ops.redis, 1000)
        ),
        "a bulk handoff stopped by the daily reserve",
    )
    stopped_at = len(handed_off(slow_ops))
    assert stopped_at < len(BACKLOG)
    start_worker(HANDOFF_QUEUE, HANDOFF_DAILY_RESERVE="0.5")
    lose_live_deal(slow_ops)
    wait_for(lambda: "9999" in handed_off(slow_ops), "the live handoff beyond the reserve")
    assert len([d for d in handed_off(slow_ops) if d in BACKLOG]) == stopped_at
    # What bulk work left stays queued, each record still marked: nothing lost, nothing queued twice.
    waiting = [d for d in BACKLOG if d not in handed_off(slow_ops)]
    assert all(pending_mark(slow_ops.redis, "deal", d) for d in waiting)
