"""The search walk: every lost deal in a window, each once, past HubSpot's 10,000-result cap."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from ops_support import T0, CollectingSink, OpsEnv, at, build_env, lost_deal

from handoff_worker.domain.models import ObjectType, SearchFilter
from handoff_worker.handoff.resync import (
    Resync,
    ResyncError,
    ResyncRequest,
    parse_moment,
    walk_modified,
)
from handoff_worker.sandbox.testing import SandboxServer

LOST_IN_WINDOW = 10_500
# 450 deals (more than two pages) share one timestamp across the first restart at 10,000.
SHARED_FROM, SHARED_TO = 9_800, 10_250


@pytest.mark.slow
def test_walks_more_than_ten_thousand_lost_deals_each_once(
    ops_sandbox: SandboxServer, redis_url: str
) -> None:
    # HubSpot allows 5 searches a second; at that pace this walk alone would take ~12 s. Both the
    # sandbox and our limiter are raised together so the test stays quick and still paced.
    ops_sandbox.control.configure(search_per_second=100)
    ops = build_env(ops_sandbox, redis_url, HUBSPOT_SEARCH_RATE_LIMIT="100/1s")
    shared_stamp = at(SHARED_FROM)
    deals = [
        lost_deal(100_000 + i, shared_stamp if SHARED_FROM <= i < SHARED_TO else at(i))
        for i in range(LOST_IN_WINDOW)
    ]
    outside = [lost_deal(300_000 + i, at(-3600 - i)) for i in range(50)]  # before the window
    outside += [lost_deal(310_000 + i, at(200_000 + i)) for i in range(50)]  # after it
    still_open = [lost_deal(320_000 + i, at(i), dealstage="contractsent") for i in range(300)]
    other_pipeline = [
        lost_deal(330_000 + i, at(i + 0.5), pipeline="partner", dealstage="partner_lost") for i in range(20)
    ]
    ops_sandbox.control.seed({"deals": deals + outside + still_open + other_pipeline})

    sink = CollectingSink()
    summary = Resync(ops.gateway, ops.rules, sink).run(
        ResyncRequest(since=T0, until=at(100_000), include_contacts=False)
    )

    expected = {d["id"] for d in deals + other_pipeline}
    assert summary.failed == 0, summary.errors
    assert len(sink.deals) == len(set(sink.deals)), "a deal was handed off twice"
    assert set(sink.deals) == expected
    assert summary.deals_found == summary.queued == len(expected)
    searches = ops_sandbox.control.requests("/crm/v3/objects/deals/search")
    # 10,520 results at 200 a page cannot come from one query: the walk restarted past the cap.
    assert len(searches) > LOST_IN_WINDOW // 200
    assert all(r["status"] == 200 for r in searches)


def test_records_sharing_a_timestamp_beyond_the_cap_stop_the_walk_loudly(ops: OpsEnv) -> None:
    ops.server.control.seed({"deals": [lost_deal(500_000 + i, at(10)) for i in range(5)]})
    # A cap of 4 results per query (pages of 2) stands in for HubSpot's 10,000: five deals with
    # one timestamp can never be paged past, and the walk must say so rather than loop or skip.
    walk = walk_modified(
        ops.gateway,
        ObjectType.DEAL,
        [[SearchFilter("dealstage", "EQ", "closedlost")]],
        since=T0,
        until=at(60),
        page_size=2,
        result_cap=4,
    )
    with pytest.raises(ResyncError, match="share hs_lastmodifieddate"):
        list(walk)


def test_small_cap_restarts_keep_ties_at_the_seam(ops: OpsEnv) -> None:
    # Stamps 0,1,2,2,2,3,3,4: restarts every 4 results land inside groups of equal stamps.
    stamps = [0, 1, 2, 2, 2, 3, 3, 4, 5, 5]
    ops.server.control.seed({"deals": [lost_deal(600_000 + i, at(s)) for i, s in enumerate(stamps)]})
    found = [
        d.id
        for d in walk_modified(
            ops.gateway,
            ObjectType.DEAL,
            [[SearchFilter("dealstage", "EQ", "closedlost")]],
            since=T0,
            until=at(60),
            page_size=2,
            result_cap=4,
        )
    ]
    assert sorted(found) == [str(600_000 + i) for i in range(len(stamps))]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24h", "2026-10-31T12:00:00+00:00"),
        ("90d", "2026-08-03T12:00:00+00:00"),
        ("30m", "2026-11-01T11:30:00+00:00"),
        ("2026-10-01", "2026-10-01T00:00:00+00:00"),
        ("2026-10-01T08:00:00+02:00", "2026-10-01T08:00:00+02:00"),
    ],
)
def test_parse_moment(text: str, expected: str) -> None:
    assert parse_moment(text, now=T0).isoformat() == expected


def test_parse_moment_names_the_option_and_shows_examples() -> None:
    with pytest.raises(ResyncError, match=r"--until 'yesterday'.*--until 24h"):
        parse_moment("yesterday", now=T0, option="--until")


@pytest.mark.parametrize("modified", ["first", "every"])
def test_records_modified_during_the_walk_are_neither_skipped_nor_doubled(ops: OpsEnv, modified: str) -> None:
    # As in a scheduled sweep: the handoff of a deal modifies it, which moves it past the walk's
    # sort position while the walk is still paging through the deals after it.
    now = datetime.now(UTC)
    deals = [lost_deal(700_000 + i, now - timedelta(seconds=60 - i)) for i in range(6)]
    ops.server.control.seed({"deals": deals})
    touched: list[str] = []

    class TouchingSink(CollectingSink):
        def deal(self, deal_id: str) -> None:
            super().deal(deal_id)
            if modified == "every" or not touched:
                touched.append(deal_id)
                ops.server.control.rep_update("deals", deal_id, {"dealname": f"Deal {deal_id} (handed off)"})

    sink = TouchingSink()
    summary = Resync(ops.gateway, ops.rules, sink, page_size=2).run(
        ResyncRequest(
            since=now - timedelta(minutes=5), until=now + timedelta(hours=1), include_contacts=False
        )
    )

    assert summary.failed == 0, summary.errors
    assert touched, "the sink must have modified a deal mid-walk for this test to mean anything"
    assert sorted(sink.deals) == sorted(d["id"] for d in deals), "a deal was skipped or doubled"
