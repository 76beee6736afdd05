"""Sweeps end to end: the sandbox over HTTP, the real engine, real Redis, Celery's real broker."""

from __future__ import annotations

import base64
import json
import threading
import time
from datetime import timedelta

import pytest
from click.testing import CliRunner
from ops_support import CollectingSink, OpsEnv, recent_window, seed_lost_deal

from handoff_worker.beat import QueueingSink
from handoff_worker.celery_app import BULK_QUEUE, HANDOFF_QUEUE, TASK_HANDOFF_DEAL, create_celery, queue_key
from handoff_worker.commands.ops import resync_command
from handoff_worker.handoff.audit import recent_audits
from handoff_worker.handoff.inline import InlineSink
from handoff_worker.handoff.ledger import Ledger
from handoff_worker.handoff.resync import (
    LOCK_KEY,
    Resync,
    ResyncError,
    ResyncRequest,
    ResyncSummary,
    SweepBusyError,
    WaitingForReason,
    read_watermark,
    run_locked,
    scheduled_window,
)
from handoff_worker.pending import finish_running, pending_key, pending_mark, start_running


def _lifecycle(ops: OpsEnv, contact_id: str) -> str:
    return str(ops.server.control.object("contacts", contact_id)["properties"].get("lifecyclestage"))


def _request() -> ResyncRequest:
    since, until = recent_window()
    return ResyncRequest(since=since, until=until)


def test_deal_missed_by_webhooks_is_handed_off_by_the_next_sweep(ops: OpsEnv) -> None:
    seed_lost_deal(ops, "8101", "Competitor", {"8201": "salesqualifiedlead", "8202": "opportunity"})
    wiring = ops.wiring()

    first = run_locked(ops.redis, wiring.resync(InlineSink(wiring.engine)), _request())

    assert (first.deals_found, first.queued, first.failed) == (1, 1, 0), first.errors
    assert _lifecycle(ops, "8201") == "lead"
    assert _lifecycle(ops, "8202") == "lead"
    assert sorted(ops.server.control.enrollments()["5101"]["contactIds"]) == ["8201", "8202"]

    ops.server.control.clear_requests()
    second = run_locked(ops.redis, wiring.resync(InlineSink(wiring.engine)), _request())

    assert (second.deals_found, second.already_done, second.queued) == (1, 1, 0)
    # Searches and batch reads are POSTs that write nothing (the sweep reads recycled contacts too).
    writes = [
        r
        for r in ops.server.control.requests()
        if "/search" not in r["path"] and not r["path"].endswith("/batch/read") and r["method"] != "GET"
    ]
    assert writes == [], "a sweep over done work must not write to HubSpot"


class _GatedSink:
    """Holds the first handoff until the test has tried a second sweep, then runs it for real."""

    def __init__(self, inner: InlineSink) -> None:
        self.inner = inner
        self.entered = threading.Event()
        self.release = threading.Event()

    def deal(self, deal_id: str) -> bool:
        self.entered.set()
        assert self.release.wait(30)
        return self.inner.deal(deal_id)

    def contact(self, contact_id: str) -> bool:
        return self.inner.contact(contact_id)


def test_two_concurrent_sweeps_do_the_work_once(ops: OpsEnv) -> None:
    seed_lost_deal(ops, "8111", "Competitor", {"8211": "salesqualifiedlead"})
    wiring = ops.wiring()
    gated = _GatedSink(InlineSink(wiring.engine))
    results: dict[str, ResyncSummary] = {}
    first = threading.Thread(
        target=lambda: results.setdefault(
            "first", run_locked(ops.redis, Resync(ops.gateway, ops.rules, gated), _request())
        )
    )
    first.start()
    assert gated.entered.wait(30)

    # A second beat (or a manual run without --wait) finds the lock taken and does nothing.
    with pytest.raises(SweepBusyError, match="another resync is running"):
        run_locked(ops.redis, wiring.resync(InlineSink(wiring.engine)), _request())
    # A manual run with --wait queues behind it and finds the work done.
    waiting = threading.Thread(
        target=lambda: results.setdefault(
            "waited",
            run_locked(ops.redis, wiring.resync(InlineSink(wiring.engine)), _request(), wait_seconds=30),
        )
    )
    waiting.start()
    gated.release.set()
    first.join(30)
    waiting.join(30)

    handed_off = [a for a in recent_audits(ops.redis, 100) if a["outcome"] == "handed_off"]
    assert [a["object_id"] for a in handed_off] == ["8111"]
    waited = results["waited"]
    assert waited.already_done == 1 and waited.queued == 0
    assert ops.redis.get(LOCK_KEY) is None


def test_watermark_moves_only_after_a_successful_sweep(ops: OpsEnv) -> None:
    seed_lost_deal(ops, "8121", "Competitor", {})
    resync = Resync(ops.gateway, ops.rules, CollectingSink())
    now = ops.server.sandbox.portal.now_ms()
    from datetime import UTC, datetime

    moment = datetime.fromtimestamp(now / 1000, tz=UTC) + timedelta(seconds=1)
    since, until = scheduled_window(ops.redis, now=moment, lookback_minutes=10)
    assert until - since == timedelta(days=1, minutes=10)  # no watermark yet: one day back

    ok = run_locked(ops.redis, resync, ResyncRequest(since, until), advance_watermark=True)
    assert ok.ok and ok.deals_found == 1
    assert read_watermark(ops.redis) == until

    later = until + timedelta(minutes=15)
    since2, until2 = scheduled_window(ops.redis, now=later, lookback_minutes=10)
    assert since2 == until - timedelta(minutes=10)
    ops.server.control.fail_next(1, 400, path_prefix="/crm/v3/objects/deals/search")
    failed = run_locked(ops.redis, resync, ResyncRequest(since2, until2), advance_watermark=True)
    assert failed.failed == 1 and "400" in failed.errors[0]
    assert read_watermark(ops.redis) == until, "a failed sweep must not move the watermark"


def test_dry_run_writes_and_queues_nothing(ops: OpsEnv) -> None:
    seed_lost_deal(ops, "8131", "Competitor", {"8231": "salesqualifiedlead"})
    seed_lost_deal(ops, "8132", None, {"8232": "salesqualifiedlead"})
    celery = create_celery(ops.settings)
    resync = Resync(
        ops.gateway,
        ops.rules,
        QueueingSink(celery, ops.redis),
        waiting=WaitingForReason(Ledger(ops.redis), ops.gateway, ops.rules),
    )
    ops.redis.set("handoff:marker", "untouched")  # Redis is not empty, so "same keys" means something
    before = {key: ops.redis.dump(key) for key in ops.redis.keys("*")}
    ops.server.control.clear_requests()

    since, until = recent_window()
    summary = run_locked(ops.redis, resync, ResyncRequest(since, until, dry_run=True))

    assert summary.dry_run and summary.deals_found == 2 and summary.queued == 2
    # Only the gateway's shared rate-limiter counters may change; nothing of the handoff's.
    after = {k: ops.redis.dump(k) for k in ops.redis.keys("*") if "ratelimit" not in k}
    assert after == {k: v for k, v in before.items() if "ratelimit" not in k}
    assert ops.redis.llen(queue_key(BULK_QUEUE)) == 0
    methods = {(r["method"], r["path"].split("?")[0]) for r in ops.server.control.requests()}
    assert all(m == "GET" or path.endswith("/search") for m, path in methods), methods

    real = run_locked(ops.redis, resync, ResyncRequest(*recent_window()))
    assert real.queued == 2 and ops.redis.llen(queue_key(BULK_QUEUE)) == 2
    assert ops.redis.llen(queue_key(HANDOFF_QUEUE)) == 0  # sweeps never queue behind or ahead of live work
    messages = [json.loads(raw) for raw in ops.redis.lrange(queue_key(BULK_QUEUE), 0, -1)]
    assert {m["headers"]["task"] for m in messages} == {TASK_HANDOFF_DEAL}
    kwargs = [json.loads(__import__("base64").b64decode(m["body"]))[1] for m in messages]
    assert sorted(k["deal_id"] for k in kwargs) == ["8131", "8132"]
    assert {k["trigger"] for k in kwargs} == {"resync"}


def test_waiting_deal_is_rerun_once_its_reason_is_set_and_escalated_once_when_overdue(ops: OpsEnv) -> None:
    seed_lost_deal(ops, "8141", None, {"8241": "salesqualifiedlead"})
    seed_lost_deal(ops, "8142", None, {"8242": "salesqualifiedlead"})
    wiring = ops.wiring()
    first = run_locked(ops.redis, wiring.resync(InlineSink(wiring.engine)), _request())
    assert first.queued == 2
    assert {w.object_id for w in Ledger(ops.redis).list_waiting()} == {"8141", "8142"}

    ops.server.control.rep_update("deals", "8141", {"closed_lost_reason": "Competitor"})
    from datetime import UTC, datetime

    a_day_later = datetime.now(UTC) + timedelta(hours=25)
    ledger = Ledger(ops.redis)
    sink = InlineSink(wiring.engine)
    revisit = WaitingForReason(ledger, ops.gateway, ops.rules, clock=lambda: a_day_later)
    summary = ResyncSummary()
    revisit.revisit(summary, dry_run=False, sink=sink)
    assert (summary.waiting_for_reason, summary.waiting_requeued, summary.escalated) == (2, 1, 1)
    assert _lifecycle(ops, "8241") == "lead"
    tasks = [
        t for t in ops.server.control.objects("tasks") if t["properties"].get("hubspot_owner_id") == "7002"
    ]
    assert len(tasks) == 1 and "Deal 8142" in tasks[0]["properties"]["hs_task_subject"]

    again = ResyncSummary()
    revisit.revisit(again, dry_run=False, sink=sink)
    assert (again.waiting_for_reason, again.escalated) == (1, 0), "escalation happens once"


def test_resync_command_dry_run_prints_json_and_exits_zero(
    ops: OpsEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_lost_deal(ops, "8151", "Competitor", {})
    for name, value in ops.env().items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(resync_command, ["--since", "1h", "--dry-run", "--json", "--no-contacts"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["deals_found"] == 1 and summary["queued"] == 1 and summary["dry_run"] is True

    ops.redis.set(LOCK_KEY, "someone-else")
    busy = CliRunner().invoke(resync_command, ["--since", "1h", "--no-contacts"])
    assert busy.exit_code == 3
    assert "another resync is running" in busy.output


class _LockThief:
    """Another host takes the lock while this sweep works (as after a long Redis outage)."""

    def __init__(self, ops: OpsEnv) -> None:
        self.ops = ops

    def deal(self, deal_id: str) -> bool:
        self.ops.redis.set(LOCK_KEY, "another-host", px=60_000)
        time.sleep(0.3)  # the renewal thread (every 0.1 s here) notices it lost the lock
        return True

    def contact(self, contact_id: str) -> bool:
        """Not reached: the test seeds deals only."""
        return True


def test_a_sweep_that_loses_its_lock_stops_and_leaves_the_watermark(ops: OpsEnv) -> None:
    seed_lost_deal(ops, "8161", "Competitor", {})
    resync = Resync(ops.gateway, ops.rules, _LockThief(ops))

    with pytest.raises(ResyncError, match="expired or was taken"):
        run_locked(ops.redis, resync, _request(), advance_watermark=True, lock_ttl_seconds=0.3)

    assert read_watermark(ops.redis) is None
    assert ops.redis.get(LOCK_KEY) == "another-host", "the loser must not delete the new holder's lock"


def test_unqualified_lead_missed_by_webhooks_is_caught_by_the_contact_sweep(ops: OpsEnv) -> None:
    # Contacts are searched on their own last-modified property (`lastmodifieddate`).
    ops.server.control.seed(
        {
            "contacts": [
                {
                    "id": "8301",
                    "properties": {
                        "email": "c8301@example.com",
                        "lifecyclestage": "salesqualifiedlead",
                        "hs_lead_status": "UNQUALIFIED",
                        "handoff_unqualified_reason": "Competitor",
                    },
                },
                {
                    "id": "8302",
                    "properties": {
                        "email": "c8302@example.com",
                        "lifecyclestage": "salesqualifiedlead",
                        "hs_lead_status": "IN_PROGRESS",
                    },
                },
            ]
        }
    )

    wiring = ops.wiring()
    summary = run_locked(ops.redis, wiring.resync(InlineSink(wiring.engine)), _request())

    assert summary.failed == 0, summary.errors
    assert _lifecycle(ops, "8301") == "lead"
    assert _lifecycle(ops, "8302") == "salesqualifiedlead", "a lead still in progress is left alone"
    assert ops.server.control.enrollments()["5101"]["contactIds"] == ["8301"]


def test_a_sweep_never_queues_a_record_already_queued_or_running(ops: OpsEnv) -> None:
    for deal_id in ("8151", "8152", "8153"):
        seed_lost_deal(ops, deal_id, "Competitor", {f"82{deal_id[2:]}": "salesqualifiedlead"})
    celery = create_celery(ops.settings)
    resync = Resync(ops.gateway, ops.rules, QueueingSink(celery, ops.redis))
    first = run_locked(ops.redis, resync, _request())
    assert first.queued == 3 and ops.redis.llen(queue_key(BULK_QUEUE)) == 3
    # The queue has not moved: a manual resync and the scheduled one find the same records again.
    for _ in range(2):
        again = run_locked(ops.redis, resync, _request())
        assert (again.queued, again.already_queued) == (0, 3)
    assert ops.redis.llen(queue_key(BULK_QUEUE)) == 3

    # One handoff starts (running), one is taken over by a live webhook (queued live), and one
    # finishes: only the finished one may be queued again.
    messages = [json.loads(raw) for raw in ops.redis.lrange(queue_key(BULK_QUEUE), 0, -1)]
    task_ids = {json.loads(base64.b64decode(m["body"]))[1]["deal_id"]: m["headers"]["id"] for m in messages}
    start_running(ops.redis, "deal", "8151", task_id=task_ids["8151"])
    ops.redis.set(pending_key("deal", "8152"), "q:live:a-webhook-task")
    start_running(ops.redis, "deal", "8153", task_id=task_ids["8153"])
    finish_running(ops.redis, "deal", "8153", task_id=task_ids["8153"])
    last = run_locked(ops.redis, resync, _request())
    assert (last.queued, last.already_queued) == (1, 2)
    assert str(pending_mark(ops.redis, "deal", "8153")).startswith("q:bulk:")
    assert ops.redis.llen(queue_key(BULK_QUEUE)) == 4


def test_resync_stops_at_the_daily_reserve_and_says_so(ops: OpsEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    seed_lost_deal(ops, "8161", "Competitor", {"8261": "salesqualifiedlead"})
    ops.server.control.configure(rate_limit="100/10s", daily_limit=10)
    for _ in range(8):  # live work (webhooks) spent most of the day; HubSpot's headers say so
        ops.gateway.get_deal("8161", ["dealname"])
    for name, value in {**ops.env(), "HANDOFF_DAILY_RESERVE": "20%"}.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(resync_command, ["--since", "1h", "--no-contacts"])
    assert result.exit_code == 1, result.output
    assert "bulk work stopped: 2 of 10 of today's HubSpot API calls are left" in result.output
    assert "HANDOFF_DAILY_RESERVE" in result.output
    assert ops.redis.llen(queue_key(BULK_QUEUE)) == 0
