"""End to end: deals lost in the sandbox -> signed webhooks -> gunicorn intake -> Celery workers -> HubSpot.

    python -m bench.e2e [--deals 80] [--generous-deals 150] [--budgets 100/10s,1000/10s]
        [--workers 1,2,4] [--memory-deals 400]

For every budget and worker count: a fresh stack (own redis-server, sandbox enforcing the budget,
one gunicorn, one Celery worker with N pool processes), N deals with 1-5 contacts each (a quarter of
the contacts also on another open deal) lost by reps at once. Reported: handoffs per minute, the
share of the budget the worker used while it ran, the best the budget allows (budget / calls per
handoff), API calls per handoff by contacts and nurture method against the endpoints' lower bound,
where every call went, and worker/web memory after 100 handoffs and after `--memory-deals`.
Every run ends with the drills' check of HubSpot's final state (exits 1 if it fails).
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from bench.drills_portal import SHIPPED_RULES, PlannedDeal, Stream, check, lose, plan_stream, seed_stream
from bench.drills_stack import Stack, StackConfig, rss_kib
from handoff_worker.handoff.audit import recent_audits
from handoff_worker.settings import RateLimit
from handoff_worker.testing import wait_until

FINAL_OUTCOMES = {"handed_off", "waiting_for_reason", "not_lost", "partial_failure"}


@dataclass
class RunResult:
    budget: RateLimit
    workers: int
    deals: int
    seconds: float
    api_calls: int
    throttled: int
    calls_by_deal: dict[str, int]
    endpoints: Counter[str]
    ok: bool
    memory: dict[str, tuple[int, int]] | None = None  # process -> (KiB after 100, KiB at the end)

    @property
    def per_minute(self) -> float:
        return 60 * self.deals / self.seconds

    @property
    def budget_share(self) -> float:
        return 100 * self.api_calls / (self.budget.requests / self.budget.window_seconds * self.seconds)

    @property
    def steady_share(self) -> float:
        """The share without the first window's burst, which a fresh rolling window grants at once:
        short runs otherwise show more than 100 %."""
        rate = self.budget.requests / self.budget.window_seconds
        return 100 * max(0, self.api_calls - self.budget.requests) / (rate * self.seconds)

    @property
    def best_per_minute(self) -> float:
        per_handoff = self.api_calls / self.deals
        return 60 * self.budget.requests / self.budget.window_seconds / per_handoff


def deals_finished(stack: Stack, deals: set[str]) -> int:
    done = {
        str(a["object_id"])
        for a in recent_audits(stack.redis(), 100_000)
        if a["kind"] == "deal" and a["outcome"] in FINAL_OUTCOMES
    }
    return len(done & deals)


def memory_of(stack: Stack) -> dict[str, int]:
    worker = sum(rss_kib(p) for p in [w.pid for w in stack.workers] + stack.pool_pids())
    web = sum(rss_kib(p) for p in [w.pid for w, _ in stack.webs] + stack.web_pids())
    return {"worker (main + pool)": worker, "web (master + workers)": web}


def run_once(
    workdir: Path, budget: str, workers: int, deals: int, *, seed: int, sample_memory: bool
) -> RunResult:
    stream = plan_stream(deals, rng=random.Random(seed), open_deal_share=0.25)
    stack = Stack(workdir, StackConfig(budget=budget, worker_concurrency=workers)).start(webs=1, workers=1)
    try:
        seed_stream(stack.hub.control, stream)
        stack.hub.control.clear_requests()
        wanted = {d.deal_id for d in stream.deals}
        began = time.monotonic()
        for deal in stream.deals:
            lose(stack.hub.control, deal)
        memory_at_100: dict[str, int] = {}
        if sample_memory and deals > 100:
            wait_until(
                lambda: deals_finished(stack, wanted) >= 100, timeout=1800, what="100 handoffs", every=0.5
            )
            memory_at_100 = memory_of(stack)
        wait_until(
            lambda: deals_finished(stack, wanted) >= deals, timeout=1800, what="every handoff", every=0.5
        )
        seconds = time.monotonic() - began
        memory_at_end = memory_of(stack)
        verdict = check(stack.hub.control, stream)
        api = [r for r in stack.hub.control.requests("/") if not r["path"].startswith("/_sandbox")]
        calls_by_deal: dict[str, int] = defaultdict(int)
        for audit in recent_audits(stack.redis(), 100_000):
            if audit["kind"] == "deal":
                calls_by_deal[str(audit["object_id"])] += int(audit.get("api_calls", 0))
        if not verdict.ok:
            print(f"    CHECK FAILED: {verdict.problems[:5]}", flush=True)
        return RunResult(
            RateLimit.parse(budget, variable="--budgets", example="100/10s"),
            workers,
            deals,
            seconds,
            sum(1 for r in api if r["status"] != 429),
            sum(1 for r in api if r["status"] == 429),
            dict(calls_by_deal),
            Counter(_endpoint(r["method"], r["path"]) for r in api),
            verdict.ok,
            {k: (memory_at_100.get(k, 0), v) for k, v in memory_at_end.items()} if memory_at_100 else None,
        )
    finally:
        stack.stop()


def _endpoint(method: str, path: str) -> str:
    """The call's route, ids and emails replaced by placeholders."""
    route = re.sub(r"/\d+", "/{id}", path)
    return f"{method} {re.sub(r'/[^/]*@[^/]*$', '/{email}', route)}"


# --------------------------------------------------------------------------- API economy


def lower_bound(deal: PlannedDeal) -> int:
    """Fewest calls HubSpot's endpoints allow for this handoff (pipelines cached, markers and the
    nurture property written with the lifecycle stage, the set's answer showing the stage it left):
    deal, its contacts' ids, the contacts (3 reads); their other deals' ids (1 read, unless every
    contact is settled by its own properties, e.g. a customer) and those deals' stages (1 read,
    when any contact has another deal); clear then set the stage (2 separate writes); one
    enrollment per contact and workflow; one add per list. A lost deal without reason: the deal
    read and one task. A reason that nurtures nobody: the deal and its contacts' ids (a contact in
    a running nurture is taken out of it: see docs/performance.md)."""
    if deal.reason is None:
        return 2
    rule = SHIPPED_RULES[deal.reason]
    eligible = [c for c in deal.contacts if c.eligible]
    if rule.lifecycle is None:
        return 2
    calls = 3
    if any(c.lifecycle not in {"customer", "evangelist"} for c in deal.contacts):
        calls += 1 + (1 if any(c.on_other_open_deal for c in deal.contacts) else 0)
    if not eligible:
        return calls
    calls += 2 if rule.lifecycle == "lead" else 1  # "other" is a forward move: one write
    if rule.lifecycle == "lead":
        calls += len(eligible) * len(rule.workflows) + len(rule.lists)
    return calls


def method_of(deal: PlannedDeal) -> str:
    if deal.reason is None:
        return "no reason (owner task)"
    rule = SHIPPED_RULES[deal.reason]
    if rule.lifecycle != "lead":
        return "not nurtured"
    parts = [name for name, present in (("workflow", rule.workflows), ("list", rule.lists)) if present]
    return " + ".join(parts + (["property"] if rule.properties else []))


def economy_table(stream: Stream, calls_by_deal: dict[str, int]) -> list[str]:
    groups: dict[tuple[str, int], list[tuple[int, int]]] = defaultdict(list)
    for deal in stream.deals:
        if deal.deal_id in calls_by_deal:
            groups[(method_of(deal), len(deal.contacts))].append(
                (calls_by_deal[deal.deal_id], lower_bound(deal))
            )
    rows = [
        "| nurture method | contacts | deals | calls per handoff | lower bound | extra |",
        "|---|---|---|---|---|---|",
    ]
    for (method, contacts), pairs in sorted(groups.items()):
        measured = sum(m for m, _ in pairs) / len(pairs)
        bound = sum(b for _, b in pairs) / len(pairs)
        rows.append(
            f"| {method} | {contacts} | {len(pairs)} | {measured:.1f} | {bound:.1f} "
            f"| {measured - bound:+.1f} |"
        )
    return rows


# --------------------------------------------------------------------------- the run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deals", type=int, default=80, help="deals per run at the first (tight) budget")
    parser.add_argument("--generous-deals", type=int, default=150, help="deals per run at the other budgets")
    parser.add_argument("--budgets", default="100/10s,1000/10s")
    parser.add_argument("--workers", default="1,2,4", help="Celery pool processes per run")
    parser.add_argument("--memory-deals", type=int, default=400, help="0 to skip the memory run")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)
    workroot = Path(tempfile.mkdtemp(prefix="handoff-e2e-"))
    budgets = args.budgets.split(",")
    results: list[RunResult] = []
    began = time.monotonic()
    print(
        "| budget | worker processes | deals | seconds | handoffs/min | best the budget allows "
        "| budget used | beyond the first burst | 429s | calls/handoff |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|", flush=True)
    for index, budget in enumerate(budgets):
        for workers in (int(w) for w in args.workers.split(",")):
            deals = args.deals if index == 0 else args.generous_deals
            result = run_once(
                workroot / f"{index}-{workers}", budget, workers, deals, seed=args.seed, sample_memory=False
            )
            results.append(result)
            print(
                f"| {result.budget} | {workers} | {deals} | {result.seconds:.1f} | {result.per_minute:.0f} "
                f"| {result.best_per_minute:.0f} | {result.budget_share:.0f} % | {result.steady_share:.0f} % "
                f"| {result.throttled} "
                f"| {result.api_calls / deals:.2f} |",
                flush=True,
            )
    last = results[-1]
    stream = plan_stream(last.deals, rng=random.Random(args.seed), open_deal_share=0.25)
    print("\nAPI economy (last run):\n" + "\n".join(economy_table(stream, last.calls_by_deal)))
    print("\nWhere the calls went (last run, per handoff):")
    for endpoint, count in last.endpoints.most_common():
        print(f"    {count / last.deals:6.2f}  {endpoint}")
    if args.memory_deals:
        memory = run_once(
            workroot / "memory", budgets[-1], 2, args.memory_deals, seed=args.seed + 1, sample_memory=True
        )
        results.append(memory)
        print(
            f"\nMemory, {budgets[-1]}, 2 pool processes, RSS KiB after 100 / after "
            f"{args.memory_deals} handoffs:"
        )
        for process, (at_100, at_end) in (memory.memory or {}).items():
            print(f"    {process:24} {at_100:>8,} / {at_end:>8,}")
    print(
        f"\nwhole bench: {time.monotonic() - began:.0f} s; final-state checks "
        f"{'passed' if all(r.ok for r in results) else 'FAILED'}"
    )
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
