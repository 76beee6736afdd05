"""The closed-loop report on a seeded history with a known answer: real handoffs through the engine
over the sandbox (two deals sharing a contact, a deal reopened and lost again, a recycled contact
given a new deal that it then wins, a reason that never nurtures, a disqualified lead, a deal waiting
for its reason), plus two recycled contacts whose journeys say they came back four days later and
whose shared deal then closed won."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from ops_support import OpsEnv, seed_lost_deal

from handoff_worker.commands.ops import report_command
from handoff_worker.domain.closed_loop import LossKind
from handoff_worker.domain.journey import Episode, Journey, JourneyState, LossDecision, Source
from handoff_worker.handoff.journeys import JourneyStore
from handoff_worker.handoff.report import closed_loop_report
from handoff_worker.handoff.report_html import RENDERERS

NOW = datetime.now(UTC)


def came_back_episode(contact_id: str, *, started: datetime, back: datetime) -> Journey:
    """A journey as the worker leaves it when sales took a Pricing-recycled contact back."""
    episode = Episode(
        number=1,
        state=JourneyState.CAME_BACK,
        reason="Pricing",
        since=started.isoformat(),
        sources=(Source(f"deal:96{contact_id}:1", LossDecision.NEW_EPISODE, ("list:701",)),),
        nurtured_by=f"deal:96{contact_id}:1",
        entered=("list:701",),
        left=(("list:701", f"came_back:{back.isoformat()}"),),
        came_back_at=back.isoformat(),
        came_back_how="deal 8791 opened",
    )
    return Journey(contact_id, episode)


@pytest.fixture
def history(ops: OpsEnv) -> OpsEnv:
    control = ops.server.control
    seed_lost_deal(ops, "8701", "Competitor", {"8801": "salesqualifiedlead", "8802": "salesqualifiedlead"})
    seed_lost_deal(ops, "8702", "Competitor", {"8801": "salesqualifiedlead"})  # shares 8801
    seed_lost_deal(ops, "8703", "Pricing", {"8803": "customer", "8804": "opportunity"})
    seed_lost_deal(ops, "8704", None, {"8806": "salesqualifiedlead"})
    seed_lost_deal(ops, "8705", "Not a Prospect", {"8807": "salesqualifiedlead"})
    control.seed(
        {
            "contacts": [
                {
                    "id": "8808",
                    "properties": {
                        "email": "c8808@example.com",
                        "lifecyclestage": "salesqualifiedlead",
                        "hs_lead_status": "UNQUALIFIED",
                        "handoff_unqualified_reason": "Pricing",
                    },
                },
                *(
                    {"id": cid, "properties": {"email": f"c{cid}@example.com", "lifecyclestage": "lead"}}
                    for cid in ("8809", "8810")
                ),
            ],
            "deals": [
                {
                    "id": "8791",
                    "properties": {
                        "dealname": "Comeback",
                        "pipeline": "default",
                        "dealstage": "closedwon",
                        "amount": "30000",
                        "closedate": (NOW - timedelta(days=5)).isoformat(),
                    },
                }
            ],
            "associations": [{"deal": "8791", "contact": "8809"}, {"deal": "8791", "contact": "8810"}],
        }
    )
    for contact_id, source in {
        "8801": "ORGANIC_SEARCH",
        "8802": "PAID_SEARCH",
        "8804": "PAID_SEARCH",
        "8809": "PAID_SEARCH",
        "8810": "REFERRALS",
    }.items():
        control.rep_update("contacts", contact_id, {"hs_analytics_source": source})

    engine = ops.wiring().engine
    for deal_id in ("8701", "8702", "8703", "8704", "8705"):
        engine.handoff_deal(deal_id, "webhook")
    engine.handoff_deal("8701", "resync")  # a second run of the same loss counts once
    engine.handoff_contact("8808", "webhook")
    # 8703 reopened and lost again: its contact came back to sales, and a new episode starts.
    control.rep_update("deals", "8703", {"dealstage": "qualifiedtobuy"})
    engine.handoff_deal("8703", "webhook")  # the reopening's webhook: the deal is open
    control.rep_update(
        "deals", "8703", {"dealstage": "closedlost", "closedate": (NOW + timedelta(days=1)).isoformat()}
    )
    engine.handoff_deal("8703", "webhook")
    # Sales opens a new deal with 8802 (the webhook's handoff takes it out of its nurture), and wins it.
    control.seed(
        {
            "deals": [
                {
                    "id": "8792",
                    "properties": {"dealname": "Back", "pipeline": "default", "dealstage": "qualifiedtobuy"},
                }
            ],
            "associations": [{"deal": "8792", "contact": "8802"}],
        }
    )
    assert engine.handoff_deal("8792", "webhook").contacts["8802"].outcome == "came_back"
    control.rep_update(
        "deals", "8792", {"dealstage": "closedwon", "amount": "5000", "closedate": NOW.isoformat()}
    )
    JourneyStore(ops.redis).save(
        [
            came_back_episode(cid, started=NOW - timedelta(days=10), back=NOW - timedelta(days=6))
            for cid in ("8809", "8810")
        ]
    )
    return ops


def _window() -> tuple[datetime, datetime]:
    now = datetime.now(UTC)
    return now - timedelta(days=90), now + timedelta(minutes=1)


def test_the_seeded_history_gives_the_known_answer(history: OpsEnv) -> None:
    since, until = _window()
    report = closed_loop_report(history.redis, history.gateway, history.rules, since=since, until=until)
    figures = report.figures
    lines = {(line.kind, line.reason): line.funnel.as_dict() for line in figures.reasons}

    assert set(lines) == {
        (LossKind.DEAL, "Competitor"),
        (LossKind.DEAL, "Pricing"),
        (LossKind.DEAL, "Not a Prospect"),
        (LossKind.LEAD, "Pricing"),
    }
    # Two deals, one shared contact: two people recycled, not three; 8802 came back on a new deal
    # (moments after it was recycled) and won it.
    assert lines[(LossKind.DEAL, "Competitor")] == {
        "lost": 2,
        "recycled": 2,
        "came_back": 1,
        "came_back_and_won": 1,
        "revenue": 5000.0,
        "came_back_rate": 0.5,
        "won_rate": 1.0,
        "recycled_to_won_rate": 0.5,
        "median_days_to_come_back": 0.0,
    }
    pricing = lines[(LossKind.DEAL, "Pricing")]
    # 8804 twice (the reopened deal's two losses are two episodes; the first came back), 8809 and
    # 8810 (came back after 4 days, both on the won deal 8791: its 30,000 counted once). 8803 is a
    # customer, never recycled.
    assert {k: pricing[k] for k in ("lost", "recycled", "came_back", "came_back_and_won", "revenue")} == {
        "lost": 2,
        "recycled": 4,
        "came_back": 3,
        "came_back_and_won": 2,
        "revenue": 30000.0,
    }
    assert (pricing["came_back_rate"], pricing["won_rate"], pricing["recycled_to_won_rate"]) == (
        0.75,
        0.6667,
        0.5,
    )
    assert pricing["median_days_to_come_back"] == 4.0
    # A reason that never nurtures: its loss, and no "recycled" at all.
    assert lines[(LossKind.DEAL, "Not a Prospect")]["lost"] == 1
    assert lines[(LossKind.DEAL, "Not a Prospect")]["recycled"] is None
    lead = lines[(LossKind.LEAD, "Pricing")]
    assert (lead["lost"], lead["recycled"], lead["came_back"]) == (1, 1, 0)

    overall = figures.overall
    assert (overall.lost, overall.recycled, overall.came_back, overall.won, overall.revenue) == (
        6,
        7,
        4,
        3,
        35000.0,
    )
    assert figures.by_kind[LossKind.LEAD].recycled == 1 and figures.by_kind[LossKind.DEAL].recycled == 6
    sources = {line.source: line.funnel for line in figures.sources}
    assert {s: (f.recycled, f.came_back, f.won, f.revenue) for s, f in sources.items()} == {
        "PAID_SEARCH": (4, 3, 2, 35000.0),
        "REFERRALS": (1, 1, 1, 30000.0),
        "ORGANIC_SEARCH": (1, 0, 0, 0.0),
        "": (1, 0, 0, 0.0),
    }
    assert [line.source for line in figures.sources][-1] == ""  # the unknown source last
    assert figures.previous.recycled == 0
    assert [w.deal_id for w in report.waiting] == ["8704"]
    # Batch reads only: the contacts' sources, the came-back contacts' deals, those deals (the
    # pipelines come from the cache the handoffs filled).
    assert report.hubspot_calls == 3


def test_a_window_after_the_history_counts_it_as_the_previous_period(history: OpsEnv) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    report = closed_loop_report(
        history.redis, history.gateway, history.rules, since=later, until=later + timedelta(days=1)
    )
    assert report.figures.reasons == [] and report.figures.overall.recycled == 0
    # The day before `later` holds today's handoffs (not the two episodes of ten days ago).
    previous = report.figures.previous
    assert (previous.lost, previous.recycled, previous.came_back, previous.won) == (6, 5, 2, 1)


def test_the_calls_stay_bounded_by_batches(history: OpsEnv) -> None:
    """250 more people who came back: still one call per 100 contacts and per 1,000 associations."""
    started, back = NOW - timedelta(days=20), NOW - timedelta(days=2)
    many = [
        replace(came_back_episode(str(9000 + n), started=started, back=back), contact_id=str(9000 + n))
        for n in range(250)
    ]
    JourneyStore(history.redis).save(many)
    since, until = _window()
    report = closed_loop_report(history.redis, history.gateway, history.rules, since=since, until=until)
    assert report.figures.overall.recycled == 257
    # sources: 256 contacts -> 3 batch reads; associations: 254 -> 1; their four deals -> 1.
    assert report.hubspot_calls == 5


@pytest.mark.parametrize("output_format", ["table", "csv", "json", "html"])
def test_every_format_shows_the_same_figures(
    history: OpsEnv, output_format: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in history.env().items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(report_command, ["--since", "90d", "--format", output_format])
    assert result.exit_code == 0, result.output
    text = result.output
    if output_format == "json":
        data = json.loads(text)
        reasons = {(r["kind"], r["reason"]): r for r in data["reasons"]}
        assert reasons[("deal", "Pricing")]["came_back_and_won"] == 2
        assert reasons[("deal", "Not a Prospect")]["recycled"] is None
        assert data["overall"]["revenue"] == 35000.0 and data["by_kind"]["lead"]["recycled"] == 1
    elif output_format == "csv":
        rows = {(r["group"], r["kind"], r["name"]): r for r in csv.DictReader(io.StringIO(text))}
        pricing = rows[("reason", "deal", "Pricing")]
        assert (pricing["recycled"], pricing["came_back"], pricing["came_back_rate"]) == ("4", "3", "0.75")
        assert rows[("reason", "deal", "Not a Prospect")]["recycled"] == ""
        assert rows[("overall", "", "all")]["revenue"] == "35000.0"
    elif output_format == "html":
        assert text.startswith("<!doctype html>") and text.count("<svg") == 1
        assert "<script" not in text and "http" not in text.replace("http://www.w3.org/2000/svg", "")
        assert text.count('class="bar"') == 3 * 3  # three reasons that nurture, three bars each
    else:
        assert "Disqualified leads" in text and "not nurtured" in text
        assert "waiting for a reason: 1 deal(s)" in text


def test_an_empty_report_renders_in_every_format(ops: OpsEnv) -> None:
    now = datetime.now(UTC)
    report = closed_loop_report(ops.redis, ops.gateway, ops.rules, since=now - timedelta(days=1), until=now)
    assert report.hubspot_calls == 0
    for output_format, render in RENDERERS.items():
        text = render(report)
        assert text.endswith("\n"), output_format
        if output_format == "json":
            assert json.loads(text)["reasons"] == []
        if output_format == "table":
            assert "waiting for a reason: none" in text
