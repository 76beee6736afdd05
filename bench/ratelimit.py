"""How close the shared Redis rate limiter gets to HubSpot's budget without going over.

N worker processes, each with its own gateway, call the sandbox as fast as the shared limiter lets
them for a fixed time. The sandbox enforces exactly the same budget and logs every request, so the
report shows the achieved rate against the budget, the busiest window the sandbox saw and any 429.

    .venv/bin/python bench/ratelimit.py --processes 8 --budget 20/1s --seconds 10

Uses REDIS_URL (default redis://127.0.0.1:6379/12) and removes only the limiter's own keys there.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time

import redis

from handoff_worker.domain.models import ObjectType
from handoff_worker.hubspot.gateway import build_gateway
from handoff_worker.sandbox.testing import SandboxServer
from handoff_worker.settings import RateLimit, Settings
from handoff_worker.testing import busiest_window

TOKEN = "pat-bench-token"
LIMITER_KEYS = "handoff:{hubspot-ratelimit}*"


def worker(url: str, redis_url: str, budget: str, stop_at: float) -> tuple[int, int]:
    """Call until `stop_at` (epoch seconds); return (requests sent, errors met)."""
    settings = Settings.from_env(
        {"HUBSPOT_ACCESS_TOKEN": TOKEN, "HUBSPOT_BASE_URL": url, "HUBSPOT_RATE_LIMIT": budget},
        dotenv_path=None,
    )
    connection = redis.Redis.from_url(redis_url)
    gateway = build_gateway(settings, connection)
    errors = 0
    while time.time() < stop_at:
        try:
            gateway.batch_read(ObjectType.DEAL, ["1"], ["dealname"])
        except Exception:  # counted and reported; the bench keeps going
            errors += 1
    connection.close()
    return gateway.calls_made, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--budget", default="20/1s", help="requests/window, e.g. 100/10s")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long the workers call")
    args = parser.parse_args()
    budget = RateLimit.parse(args.budget, variable="--budget", example="--budget 20/1s")
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/12")
    connection = redis.Redis.from_url(redis_url)
    for key in connection.scan_iter(LIMITER_KEYS):
        connection.delete(key)

    server = SandboxServer.start(
        seed={"deals": [{"id": "1", "dealname": "Bench"}]}, access_token=TOKEN, rate_limit=args.budget
    )
    try:
        context = multiprocessing.get_context("spawn")
        with context.Pool(args.processes) as pool:
            # A few seconds of grace: spawning 8 interpreters takes a while on a small machine.
            stop_at = time.time() + args.seconds + 3
            results = pool.starmap(worker, [(server.url, redis_url, args.budget, stop_at)] * args.processes)
        logged = server.control.requests("/crm/")
    finally:
        server.stop()

    times = [r["at"] for r in logged]
    elapsed = (max(times) - min(times)) / 1000 if len(times) > 1 else 0.0
    achieved = (len(times) - 1) / elapsed if elapsed else 0.0
    allowed = budget.requests / budget.window_seconds
    print(f"processes            {args.processes}")
    print(f"budget               {budget} ({allowed:.2f} req/s)")
    print(f"requests (sandbox)   {len(times)} over {elapsed:.2f}s")
    print(f"requests (gateways)  {sum(sent for sent, _ in results)}, errors {sum(e for _, e in results)}")
    print(f"achieved             {achieved:.2f} req/s = {100 * achieved / allowed:.1f}% of the budget")
    busiest = busiest_window(times, budget.window_seconds * 1000)
    print(f"busiest window       {busiest} (budget {budget.requests})")
    print(f"429 answers          {sum(1 for r in logged if r['status'] == 429)}")


if __name__ == "__main__":
    main()
