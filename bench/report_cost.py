"""What the closed-loop report costs in HubSpot calls and time, for a history of N recycled people.

Seeds the sandbox with N contacts (an original source each) and Redis with one episode per contact,
a share of which came back; every second person who came back has a closed-won deal (shared by
pairs, so revenue de-duplication is exercised). Then runs the report as `handoff-worker report`
does and prints the calls per endpoint (the sandbox logs every request) and the time.

    REDIS_URL=redis://127.0.0.1:6379/9 .venv/bin/python -m bench.report_cost --people 5000

FLUSHES the Redis database in REDIS_URL (default redis://127.0.0.1:6379/9).
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis

from handoff_worker.domain.journey import Episode, Journey, JourneyState, LossDecision, Source
from handoff_worker.handoff.journeys import JourneyStore
from handoff_worker.handoff.report import closed_loop_report
from handoff_worker.handoff.stages import PipelineCache
from handoff_worker.hubspot.gateway import build_gateway
from handoff_worker.nurture_config import load_rules
from handoff_worker.sandbox.testing import SandboxServer
from handoff_worker.settings import Settings

RULES = Path(__file__).resolve().parents[1] / "tests" / "ops" / "nurture-ops.yaml"
SOURCES = ("ORGANIC_SEARCH", "PAID_SEARCH", "REFERRALS", "EMAIL_MARKETING", "")


def seed(server: SandboxServer, client: redis.Redis, people: int, came_back_share: float) -> None:
    now = datetime.now(UTC)
    contacts: list[dict[str, Any]] = []
    deals: list[dict[str, Any]] = []
    links: list[dict[str, str]] = []
    journeys: list[Journey] = []
    for n in range(people):
        cid = str(500_000 + n)
        properties = {"email": f"p{n}@example.com", "lifecyclestage": "lead"}
        if SOURCES[n % len(SOURCES)]:
            properties["hs_analytics_source"] = SOURCES[n % len(SOURCES)]
        contacts.append({"id": cid, "properties": properties})
        started = now - timedelta(days=1 + n % 80)
        back = n % 100 < came_back_share * 100
        if back and n % 4 in (0, 1):
            deal_id = str(900_000 + n // 4)
            if n % 4 == 0:
                deals.append(
                    {
                        "id": deal_id,
                        "properties": {
                            "dealname": f"Won {n}",
                            "pipeline": "default",
                            "dealstage": "closedwon",
                            "amount": "1000",
                            "closedate": now.isoformat(),
                        },
                    }
                )
            links.append({"deal": deal_id, "contact": cid})
        loss_id = f"deal:{800_000 + n}:1"
        journeys.append(
            Journey(
                cid,
                Episode(
                    number=1,
                    state=JourneyState.CAME_BACK if back else JourneyState.RECYCLED,
                    reason=("Pricing", "Competitor", "Feature Missing")[n % 3],
                    since=started.isoformat(),
                    sources=(Source(loss_id, LossDecision.NEW_EPISODE, ("list:701",)),),
                    nurtured_by=loss_id,
                    came_back_at=(started + timedelta(hours=n % 48)).isoformat() if back else None,
                    came_back_how="deal opened" if back else None,
                ),
            )
        )
    # Only deals on won links: a deal's contacts come from the associations seeded with it.
    for start in range(0, len(contacts), 2000):
        server.control.seed({"contacts": contacts[start : start + 2000]})
    server.control.seed({"deals": deals, "associations": links})
    JourneyStore(client).save(journeys)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--people", type=int, default=5000)
    parser.add_argument("--came-back", type=float, default=0.3, help="share of people who came back")
    args = parser.parse_args()
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/9")
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    server = SandboxServer.start(rate_limit="1000000/10s")
    try:
        seed(server, client, args.people, args.came_back)
        settings = Settings.from_env(
            {
                "HUBSPOT_ACCESS_TOKEN": "pat-bench-report",
                "HUBSPOT_BASE_URL": server.url,
                "REDIS_URL": redis_url,
                "HANDOFF_CONFIG": str(RULES),
                "HUBSPOT_RATE_LIMIT": "1000000/10s",
            },
            dotenv_path=None,
        )
        gateway = build_gateway(settings, client)
        rules = load_rules(RULES)
        PipelineCache(client, gateway).catalog(rules.deals)  # as the workers keep it
        server.control.clear_requests()
        now = datetime.now(UTC)
        started = time.perf_counter()
        report = closed_loop_report(client, gateway, rules, since=now - timedelta(days=90), until=now)
        elapsed = time.perf_counter() - started
        by_endpoint = Counter(
            f"{r['method']} {r['path'].split('?')[0]}" for r in server.control.requests("/crm")
        )
        overall = report.figures.overall
        print(
            f"people {args.people}: recycled {overall.recycled}, came back {overall.came_back}, "
            f"won {overall.won}, revenue {overall.revenue:,.0f}"
        )
        print(f"HubSpot calls {report.hubspot_calls} in {elapsed:.2f} s")
        for endpoint, count in sorted(by_endpoint.items()):
            print(f"  {count:5}  {endpoint}")
    finally:
        server.stop()
        client.close()


if __name__ == "__main__":
    main()
