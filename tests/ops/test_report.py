"""The closed-loop report, checked against a history made by real handoffs through the engine."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from ops_support import OpsEnv, seed_lost_deal

from handoff_worker.commands.ops import report_command
from handoff_worker.handoff.report import RENDERERS, build_report, closed_loop_report


@pytest.fixture
def history(ops: OpsEnv) -> OpsEnv:
    seed_lost_deal(ops, "8701", "Competitor", {"8801": "salesqualifiedlead", "8802": "salesqualifiedlead"})
    seed_lost_deal(ops, "8702", "Competitor", {"8803": "customer"})
    seed_lost_deal(ops, "8703", "Pricing", {"8804": "opportunity", "8805": "salesqualifiedlead"})
    seed_lost_deal(ops, "8704", None, {"8806": "salesqualifiedlead"})
    seed_lost_deal(ops, "8705", "Not a Prospect", {"8807": "salesqualifiedlead"})
    engine = ops.wiring().engine
    for deal_id in ("8701", "8702", "8703", "8704", "8705"):
        engine.handoff_deal(deal_id, "webhook")
    engine.handoff_deal("8701", "resync")  # a second run of the same loss counts once

    # After the recycle: 8801 is worked by sales again; 8804 gets a new deal.
    ops.server.control.rep_update("contacts", "8801", {"lifecyclestage": "salesqualifiedlead"})
    ops.server.control.seed(
        {
            "deals": [{"id": "8799", "properties": {"dealname": "Comeback", "dealstage": "qualifiedtobuy"}}],
            "associations": [{"deal": "8799", "contact": "8804"}],
        }
    )
    return ops


def _window() -> tuple[datetime, datetime]:
    now = datetime.now(UTC)
    return now - timedelta(days=90), now + timedelta(minutes=1)


def test_figures_per_reason_match_the_seeded_history(history: OpsEnv) -> None:
    since, until = _window()
    report = closed_loop_report(history.redis, history.gateway, since=since, until=until)
    lines = {line.reason: line.as_dict() for line in report.lines}

    assert set(lines) == {"Competitor", "Pricing", "Not a Prospect"}
    competitor = lines["Competitor"]
    assert (competitor["deals_lost"], competitor["contacts_recycled"], competitor["came_back"]) == (2, 2, 1)
    assert competitor["enrolled"] == {"Competitor nurture": 2}
    assert competitor["skipped"] == {"customer": 1}  # the customer is protected
    assert competitor["came_back_rate"] == 0.5
    pricing = lines["Pricing"]
    assert (pricing["deals_lost"], pricing["contacts_recycled"], pricing["came_back"]) == (1, 2, 1)
    assert pricing["enrolled"] == {"Pricing list": 2}
    not_prospect = lines["Not a Prospect"]
    assert not_prospect["skipped"] == {"not_recycled": 1}
    assert (not_prospect["deals_lost"], not_prospect["contacts_recycled"]) == (1, 0)
    assert [w.deal_id for w in report.waiting] == ["8704"]


def test_a_window_after_the_history_is_empty(history: OpsEnv) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    report = closed_loop_report(history.redis, history.gateway, since=later, until=later)
    assert report.lines == []


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
        reasons = {r["reason"]: r for r in json.loads(text)["reasons"]}
        assert reasons["Competitor"]["came_back"] == 1
    elif output_format == "csv":
        rows = {r["reason"]: r for r in csv.DictReader(io.StringIO(text))}
        assert rows["Pricing"]["contacts_recycled"] == "2" and rows["Pricing"]["came_back_rate"] == "0.5000"
    elif output_format == "html":
        assert text.startswith("<!doctype html>") and text.count("<svg") == 3
        assert "<script" not in text and "http" not in text.replace("http://www.w3.org/2000/svg", "")
    else:
        assert "Competitor" in text and "waiting for a reason: 1 deal(s)" in text


@pytest.mark.parametrize("output_format", ["table", "csv", "json", "html"])
def test_an_empty_report_renders_in_every_format(output_format: str) -> None:
    now = datetime.now(UTC)
    text = RENDERERS[output_format](build_report([], [], set(), since=now - timedelta(days=1), until=now))
    assert text.endswith("\n")
    if output_format == "json":
        assert json.loads(text)["reasons"] == []
    if output_format == "table":
        assert "waiting for a reason: none" in text
