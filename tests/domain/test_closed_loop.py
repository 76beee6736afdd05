"""The loop's counting, table by table: episodes not deals, won deals once, reasons that never nurture."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from handoff_worker.domain.closed_loop import (
    EpisodeRecord,
    LossKind,
    LossRecord,
    Period,
    WonDeal,
    count_loop,
)

T0 = datetime(2026, 10, 1, 15, 0, tzinfo=UTC)
PERIOD = Period(T0, T0 + timedelta(days=30))
NEVER = frozenset({"Not a Fit - Never Will Be"})


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


def loss(loss_id: str, reason: str, at: float) -> LossRecord:
    kind = LossKind.LEAD if loss_id.startswith("contact:") else LossKind.DEAL
    return LossRecord(loss_id, kind, reason, day(at))


def episode(
    contact: str,
    reason: str,
    started: float,
    back: float | None = None,
    *,
    kind: LossKind = LossKind.DEAL,
    number: int = 1,
    next_started: float | None = None,
) -> EpisodeRecord:
    return EpisodeRecord(
        contact,
        number,
        kind,
        reason,
        day(started),
        None if back is None else day(back),
        None if next_started is None else day(next_started),
    )


def test_two_deals_sharing_a_contact_count_one_recycled_person() -> None:
    figures = count_loop(
        [loss("deal:1:1", "Pricing", 1), loss("deal:2:1", "Pricing", 1)],
        [episode("c1", "Pricing", 1)],
        {},
        {},
        never_nurtured=NEVER,
        period=PERIOD,
    )
    (line,) = figures.reasons
    assert (line.funnel.lost, line.funnel.recycled) == (2, 1)
    assert figures.overall.recycled == 1


def test_came_back_won_revenue_rates_and_median() -> None:
    episodes = [
        episode("c1", "Pricing", 1, back=5),  # came back after 4 days, won 48,000
        episode("c2", "Pricing", 2, back=12),  # came back after 10 days, won the same deal as c1
        episode("c3", "Pricing", 3, back=4),  # came back after 1 day, nothing won
        episode("c4", "Pricing", 3),  # still with marketing
    ]
    shared = WonDeal("d9", day(20), 48_000.0)
    won = {"c1": [shared], "c2": [shared], "c3": [], "c4": [WonDeal("d8", day(9), 5_000.0)]}
    figures = count_loop(
        [loss(f"deal:{n}:1", "Pricing", 1) for n in range(4)],
        episodes,
        won,
        {},
        never_nurtured=NEVER,
        period=PERIOD,
    )
    funnel = figures.reasons[0].funnel
    assert (funnel.recycled, funnel.came_back, funnel.won) == (4, 3, 2)
    assert funnel.revenue == 48_000.0  # one deal, two people: counted once; c4 never came back
    assert funnel.came_back_rate == 0.75
    assert funnel.won_rate == pytest.approx(2 / 3)
    assert funnel.recycled_to_won_rate == 0.5
    assert funnel.median_days_to_come_back == 4.0


@pytest.mark.parametrize(
    ("closed", "next_started", "counted"),
    [
        (day(1).replace(hour=0), None, True),  # closed at midnight of the day the episode started
        (day(1) - timedelta(days=1), None, False),  # won before the contact was recycled
        (day(10), 8, False),  # won after the next episode started: that one's
        (day(7), 8, True),
    ],
)
def test_a_won_deal_belongs_to_the_episode_it_closed_in(
    closed: datetime, next_started: float | None, counted: bool
) -> None:
    figures = count_loop(
        [],
        [episode("c1", "Pricing", 1, back=2, next_started=next_started)],
        {"c1": [WonDeal("d1", closed, 100.0)]},
        {},
        never_nurtured=NEVER,
        period=PERIOD,
    )
    assert figures.overall.won == (1 if counted else 0)
    assert figures.overall.revenue == (100.0 if counted else 0.0)


def test_reasons_that_never_nurture_show_losses_and_no_recycled_figure() -> None:
    figures = count_loop(
        [loss("deal:1:1", "Not a Fit - Never Will Be", 2), loss("deal:2:1", "Pricing", 2)],
        [],
        {},
        {},
        never_nurtured=NEVER,
        period=PERIOD,
    )
    lines = {line.reason: line.funnel for line in figures.reasons}
    assert lines["Not a Fit - Never Will Be"].recycled is None
    assert lines["Not a Fit - Never Will Be"].came_back_rate is None
    assert lines["Pricing"].recycled == 0
    assert figures.overall.lost == 2 and figures.overall.recycled == 0


def test_lost_deals_and_disqualified_leads_are_counted_apart_and_together() -> None:
    figures = count_loop(
        [loss("deal:1:1", "Pricing", 1), loss("contact:7:1", "Pricing", 1)],
        [episode("c1", "Pricing", 1, back=3), episode("c7", "Pricing", 1, kind=LossKind.LEAD)],
        {},
        {},
        never_nurtured=NEVER,
        period=PERIOD,
    )
    assert [(line.kind, line.funnel.recycled) for line in figures.reasons] == [
        (LossKind.DEAL, 1),
        (LossKind.LEAD, 1),
    ]
    assert figures.by_kind[LossKind.DEAL].came_back == 1 and figures.by_kind[LossKind.LEAD].came_back == 0
    assert (figures.overall.lost, figures.overall.recycled, figures.overall.came_back) == (2, 2, 1)


def test_periods_the_previous_one_and_episodes_outside_both() -> None:
    figures = count_loop(
        [loss("deal:1:1", "Pricing", 1), loss("deal:2:1", "Pricing", -10), loss("deal:3:1", "Pricing", -90)],
        [episode("c1", "Pricing", 1), episode("c2", "Pricing", -10, back=-5), episode("c3", "Pricing", -90)],
        {"c2": [WonDeal("d2", day(-4), 10.0)]},
        {},
        never_nurtured=NEVER,
        period=PERIOD,
    )
    assert (figures.overall.lost, figures.overall.recycled, figures.overall.came_back) == (1, 1, 0)
    previous = figures.previous
    assert (previous.lost, previous.recycled, previous.came_back, previous.won, previous.revenue) == (
        1,
        1,
        1,
        1,
        10.0,
    )


def test_original_sources_group_people_not_losses() -> None:
    figures = count_loop(
        [loss("deal:1:1", "Pricing", 1)],
        [episode("c1", "Pricing", 1, back=2), episode("c2", "Pricing", 1), episode("c3", "Competitor", 2)],
        {},
        {"c1": "PAID_SEARCH", "c2": "PAID_SEARCH", "c3": ""},
        never_nurtured=NEVER,
        period=PERIOD,
    )
    lines = {line.source: line.funnel for line in figures.sources}
    assert [line.source for line in figures.sources] == ["PAID_SEARCH", ""]
    assert (lines["PAID_SEARCH"].recycled, lines["PAID_SEARCH"].came_back) == (2, 1)
    assert lines["PAID_SEARCH"].lost is None and lines[""].recycled == 1


def test_nothing_to_count() -> None:
    figures = count_loop([], [], {}, {}, never_nurtured=NEVER, period=PERIOD)
    assert figures.reasons == [] and figures.sources == []
    assert figures.overall.as_dict()["came_back_rate"] is None
    assert figures.overall.median_days_to_come_back is None
