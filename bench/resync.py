"""Resync at scale: a window of lost deals of which only some still need a handoff.

Seeds the sandbox with N lost deals (one contact each) and marks all but M of them complete in the
engine's ledger, as earlier webhooks would have. Then one sweep walks the window and queues the M
missing handoffs, and real Celery worker processes run them against the sandbox, which enforces
the account budget and logs every request. Reported: the sweep's time and search calls, the
handoff phase's time and API calls, the achieved rate against the budget, and any 429.

    REDIS_URL=redis://127.0.0.1:6379/9 .venv/bin/python bench/resync.py --deals 10000 --handoffs 1000

FLUSHES the Redis database in REDIS_URL (default redis://127.0.0.1:6379/9).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis

from handoff_worker.beat import QueueingSink
from handoff_worker.celery_app import BULK_QUEUE, create_celery
from handoff_worker.domain.models import RecordKind
from handoff_worker.handoff.audit import recent_audits
from handoff_worker.handoff.ledger import ACTIVE, Ledger, Loss
from handoff_worker.handoff.resync import LedgerDoneCheck, Resync, ResyncRequest, run_locked
from handoff_worker.nurture_config import load_rules
from handoff_worker.sandbox.testing import SandboxServer
from handoff_worker.settings import RateLimit, Settings

TOKEN = "pat-bench-token"
RULES = Path(__file__).resolve().parents[1] / "tests" / "ops" / "nurture-ops.yaml"
CELERY = Path(sys.executable).with_name("celery")


def seed(server: SandboxServer, deals: int) -> datetime:
    start = datetime.now(UTC)
    server.control.seed(
        {
            "deals": [
                {
                    "id": str(100_000 + i),
                    "properties": {
                        "dealname": f"Bench {i}",
                        "pipeline": "default",
                        "dealstage": "closedlost",
                        "closed_lost_reason": "Competitor",
                    },
                }
                for i in range(deals)
            ],
            "contacts": [
                {
                    "id": str(500_000 + i),
                    "properties": {"email": f"b{i}@example.com", "lifecyclestage": "salesqualifiedlead"},
                }
                for i in range(deals)
            ],
            "associations": [{"deal": str(100_000 + i), "contact": str(500_000 + i)} for i in range(deals)],
        }
    )
    return start


def mark_done(client: redis.Redis, deals: int, handoffs: int) -> None:
    """What earlier webhooks left: every deal but the last `handoffs` complete in the ledger."""
    ledger = Ledger(client)
    for i in range(deals - handoffs):
        loss = Loss(RecordKind.DEAL, str(100_000 + i), 1, "", ACTIVE)
        ledger.save_loss(loss)
        ledger.mark_complete(loss)


def start_stack(budget: str) -> tuple[str, redis.Redis, SandboxServer]:
    """REDIS_URL's database, flushed, and a sandbox enforcing the account budget `budget`."""
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/9")
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    return redis_url, client, SandboxServer.start(seed="default", access_token=TOKEN, rate_limit=budget)


def worker_env(server: SandboxServer, redis_url: str, budget: str, **extra: str) -> dict[str, str]:
    """The settings a worker process reads, pointed at the bench's sandbox and Redis."""
    return {
        "HUBSPOT_ACCESS_TOKEN": TOKEN,
        "HUBSPOT_BASE_URL": server.url,
        "REDIS_URL": redis_url,
        "HANDOFF_CONFIG": str(RULES),
        "HUBSPOT_RATE_LIMIT": budget,
        **extra,
    }


def start_worker(env: dict[str, str], queue: str, processes: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            *(str(CELERY), "-A", "handoff_worker.celery_app", "worker", "-Q", queue),
            *("--hostname", f"{queue}@bench", "--concurrency", str(processes)),
            *("--without-heartbeat", "--without-gossip", "--without-mingle", "-l", "ERROR"),
        ],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
    )


def steady_state(times_ms: list[int], budget: RateLimit) -> float:
    """Mean use of the budget over the whole windows between the first and the last call: leaves
    out the ramp-up while the sweep queues work and the tail while the last handoffs finish."""
    window_ms = budget.window_seconds * 1000
    if len(times_ms) < 2:
        return 0.0
    windows = int((times_ms[-1] - times_ms[0]) // window_ms)
    counts = [0] * windows
    for moment in times_ms:
        index = int((moment - times_ms[0]) // window_ms)
        if index < windows:
            counts[index] += 1
    full = counts[1:-1] or counts
    return 100 * sum(full) / (len(full) * budget.requests) if full else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deals", type=int, default=10_000)
    parser.add_argument("--handoffs", type=int, default=1_000, help="deals still needing a handoff")
    parser.add_argument("--budget", default="100/10s", help="account budget, requests/window")
    parser.add_argument("--search-per-second", type=int, default=5)
    parser.add_argument("--workers", type=int, default=8, help="Celery worker processes")
    args = parser.parse_args()
    budget = RateLimit.parse(args.budget, variable="--budget", example="--budget 100/10s")
    redis_url, client, server = start_stack(args.budget)
    server.control.configure(search_per_second=args.search_per_second)
    env = worker_env(server, redis_url, args.budget, HUBSPOT_SEARCH_RATE_LIMIT=f"{args.search_per_second}/1s")
    settings = Settings.from_env(env, dotenv_path=None)
    from handoff_worker.hubspot.gateway import build_gateway

    gateway = build_gateway(settings, client)
    since = seed(server, args.deals) - timedelta(minutes=1)
    mark_done(client, args.deals, args.handoffs)
    workers = start_worker(env, BULK_QUEUE, args.workers)
    try:
        server.control.clear_requests()
        resync = Resync(
            gateway,
            load_rules(RULES),
            QueueingSink(create_celery(settings), client),
            done=LedgerDoneCheck(Ledger(client)),
        )
        began = time.monotonic()
        summary = run_locked(
            client,
            resync,
            ResyncRequest(since, datetime.now(UTC) + timedelta(minutes=1), include_contacts=False),
        )
        swept = time.monotonic() - began
        while sum(1 for a in recent_audits(client, args.handoffs * 2) if a["outcome"] == "handed_off") < min(
            args.handoffs, summary.queued
        ):
            time.sleep(0.5)
        finished = time.monotonic() - began
        logged = server.sandbox.logged("/")
    finally:
        workers.terminate()
        workers.wait(timeout=30)
        server.stop()

    searches = [r for r in logged if r["path"].endswith("/search")]
    others = [r for r in logged if not r["path"].endswith("/search")]
    times = sorted(r["at"] for r in others)
    span = (times[-1] - times[0]) / 1000 if len(times) > 1 else 0.0
    allowed = budget.requests / budget.window_seconds
    achieved = (len(times) - 1) / span if span else 0.0
    print(f"deals in window         {args.deals:,} ({summary.already_done:,} already done)")
    print(f"handoffs queued         {summary.queued:,}, failed {summary.failed}")
    print(f"sweep                   {swept:.1f} s, {len(searches)} search calls")
    print(f"sweep + handoffs        {finished:.1f} s")
    print(f"handoff API calls       {len(others):,} ({len(others) / max(summary.queued, 1):.1f} per deal)")
    print(f"budget                  {budget} = {allowed:.1f} req/s")
    print(f"achieved                {achieved:.2f} req/s = {100 * achieved / allowed:.1f} % of the budget")
    print(f"steady state            {steady_state(times, budget):.1f} % of the budget (full windows only)")
    print(f"429 answers             {sum(1 for r in logged if r['status'] == 429)}")


if __name__ == "__main__":
    main()
