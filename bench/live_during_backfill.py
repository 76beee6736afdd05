"""A live webhook's handoff during a large backfill: how long it waits to start.

Seeds the sandbox with N lost deals (one contact each), none handed off yet, and lets one sweep
queue them all on the bulk queue. The Procfile's two handoff processes run as real Celery workers:
`bulk` (queue handoff_bulk) and `worker` (queue handoff), each with P pool processes, sharing the
account budget through Redis. Once the backfill is under way, L more deals are lost one every few
seconds and queued live, as the intake would. Reported: each live handoff's wait from queueing to
its start and to its end, what the backfill did meanwhile, the budget used, and any 429.

    REDIS_URL=redis://127.0.0.1:6379/9 .venv/bin/python -m bench.live_during_backfill --backlog 10000

FLUSHES the Redis database in REDIS_URL (default redis://127.0.0.1:6379/9).
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime, timedelta

import redis

from bench.resync import RULES, start_stack, start_worker, worker_env
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
from handoff_worker.nurture_config import load_rules
from handoff_worker.settings import RateLimit, Settings

LIVE_FIRST_ID = 900_000


def lost_deals(first: int, count: int) -> dict[str, list[dict[str, object]]]:
    return {
        "deals": [
            {
                "id": str(first + i),
                "properties": {
                    "dealname": f"Bench {first + i}",
                    "pipeline": "default",
                    "dealstage": "closedlost",
                    "closed_lost_reason": "Competitor",
                },
            }
            for i in range(count)
        ],
        "contacts": [
            {
                "id": str(first + 5_000_000 + i),
                "properties": {"email": f"b{first + i}@example.com", "lifecyclestage": "salesqualifiedlead"},
            }
            for i in range(count)
        ],
        "associations": [
            {"deal": str(first + i), "contact": str(first + 5_000_000 + i)} for i in range(count)
        ],
    }


def audits_by_deal(client: redis.Redis) -> dict[str, dict[str, object]]:
    found: dict[str, dict[str, object]] = {}
    for audit in recent_audits(client, 100_000):  # newest first: keep the first run of each deal
        found[str(audit["object_id"])] = audit
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backlog", type=int, default=10_000, help="lost deals the backfill queues")
    parser.add_argument("--live", type=int, default=10, help="live deals lost during the backfill")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between live deals")
    parser.add_argument("--warmup", type=float, default=30.0, help="backfill seconds before the first")
    parser.add_argument("--budget", default="100/10s", help="account budget, requests/window")
    parser.add_argument("--processes", type=int, default=2, help="pool processes of each worker")
    args = parser.parse_args()
    budget = RateLimit.parse(args.budget, variable="--budget", example="--budget 100/10s")
    redis_url, client, server = start_stack(args.budget)
    env = worker_env(server, redis_url, args.budget)
    settings = Settings.from_env(env, dotenv_path=None)
    from handoff_worker.hubspot.gateway import build_gateway

    celery = create_celery(settings)
    since = datetime.now(UTC) - timedelta(minutes=1)
    server.control.seed(lost_deals(100_000, args.backlog))
    with work_class(WorkClass.BULK):
        resync = Resync(build_gateway(settings, client), load_rules(RULES), QueueingSink(celery, client))
        summary = run_locked(
            client,
            resync,
            ResyncRequest(since, datetime.now(UTC) + timedelta(minutes=1), include_contacts=False),
        )
    queued = client.llen(queue_key(BULK_QUEUE))
    workers = [
        start_worker(env, BULK_QUEUE, args.processes),
        start_worker(env, HANDOFF_QUEUE, args.processes),
    ]
    sent_at: dict[str, float] = {}
    try:
        server.control.clear_requests()
        began = time.time()
        time.sleep(args.warmup)
        for n in range(args.live):
            deal_id = str(LIVE_FIRST_ID + n)
            server.control.seed(lost_deals(LIVE_FIRST_ID + n, 1))
            sent_at[deal_id] = time.time()
            celery.send_task(
                TASK_HANDOFF_DEAL, kwargs={"deal_id": deal_id, "trigger": "webhook"}, queue=HANDOFF_QUEUE
            )
            time.sleep(args.every)
        deadline = time.time() + 120
        while time.time() < deadline:
            done = audits_by_deal(client)
            if all(d in done for d in sent_at):
                break
            time.sleep(0.5)
        ended = time.time()
        logged = server.sandbox.logged("/")
        left = client.llen(queue_key(BULK_QUEUE))
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=60)
        server.stop()

    done = audits_by_deal(client)
    starts, ends = [], []
    for deal_id, at in sent_at.items():
        audit = done.get(deal_id)
        if audit is None:
            print(f"live deal {deal_id}: not handed off within 120 s")
            continue
        started = datetime.fromisoformat(str(audit["at"])).timestamp()
        starts.append(started - at)
        ends.append(started + int(str(audit.get("duration_ms", 0))) / 1000 - at)
    bulk_runs = sum(1 for d, a in done.items() if d not in sent_at and a.get("outcome") == "handed_off")
    calls = [r for r in logged if not r["path"].endswith("/search")]
    span = ended - began
    allowed = budget.requests / budget.window_seconds
    print(f"backfill queued         {summary.queued:,} deals ({queued:,} messages on {BULK_QUEUE})")
    print(f"workers                 bulk and live, {args.processes} pool processes each; budget {budget}")
    print(f"live deals              {len(sent_at)}, one every {args.every:g} s after {args.warmup:g} s")
    if starts:
        print(f"live wait to start      median {statistics.median(starts):.2f} s, max {max(starts):.2f} s")
        print(f"live wait to finish     median {statistics.median(ends):.2f} s, max {max(ends):.2f} s")
    print(f"backfill meanwhile      {bulk_runs:,} deals handed off in {span:.0f} s, {left:,} still queued")
    print(f"API calls               {len(calls):,} = {len(calls) / span:.1f} req/s of {allowed:.1f} allowed")
    print(f"429 answers             {sum(1 for r in logged if r['status'] == 429)}")


if __name__ == "__main__":
    main()
