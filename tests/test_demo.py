"""The README's first command: the whole story, in one process, on embedded defaults."""

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from handoff_worker.cli import main
from handoff_worker.demo import format_result, run_demo

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_tells_the_whole_story_and_hubspot_ends_in_the_right_state() -> None:
    result = run_demo(ROOT / "config/nurture.yaml", echo=lambda _: None, pause=0.1)
    contacts = {c["id"]: c["properties"] for c in result.contacts}

    # Pricing (Acme) and Not Ready (Globex, after the reason was filled in) and the disqualified
    # lead are back to lead; the customer and the contact with another open deal are untouched.
    for recycled in ("3001", "3002", "3003", "3006"):
        assert contacts[recycled]["lifecyclestage"] == "lead", recycled
        assert contacts[recycled]["handoff_recycled_at"], recycled
    assert contacts["3004"]["lifecyclestage"] == "customer"
    assert contacts["3005"]["lifecyclestage"] == "opportunity"

    enrolled = {
        wid: sorted(e["contactIds"])
        for wid, e in result.enrollments.items()
        if isinstance(e, dict) and "contactIds" in e
    }
    assert enrolled["5102"] == ["3002"]  # Pricing; Dana Lee left it when she got a new deal
    assert enrolled["5103"] == ["3003"]  # Not Ready
    assert enrolled["5104"] == []  # Feature Missing: Ria still has an open deal
    assert enrolled["5101"] == []  # Competitor is never nurtured
    attempts = [a for e in result.enrollments.values() if isinstance(e, dict) for a in e.get("attempts", [])]
    assert len(attempts) == 3, "each contact enrolled exactly once, never asked twice"

    assert sorted(result.list_memberships["702"]["memberIds"]) == ["3002"]
    assert result.list_memberships["701"]["memberIds"] == ["3006"]
    assert contacts["3003"]["nurture_track"] == "quarterly_checkin"

    subjects = [t["properties"]["hs_task_subject"] for t in result.tasks]
    assert subjects == ["Add a lost reason to Globex pilot"]
    assert result.api_calls > 0

    table = format_result(result)
    # Names and sentences for people; the engine's codes only in --json and logs.
    assert "Deal Acme expansion (lost: Pricing): 2 of 2 contacts recycled" in table
    assert "Dana Lee     recycled to lead, enrolled in Pricing and ROI nurture" in table
    assert "Ria Shah     left alone: still on the open deal Umbrella direct" in table
    assert "Deal Acme second try: open: 1 recycled contact back with sales" in table
    assert re.search(r"Dana Lee     back with sales \(deal \d+ opened\): taken out of the nurture", table)
    assert "Deal Initech renewal (lost: Competitor): nobody recycled: Competitor is never nurtured" in table
    assert "for Jordan Reyes: Add a lost reason to Globex pilot" in table
    for code in ("handed_off", "deal_open", "clear_then_set", "not_recycled", "open_deal", "partial_failure"):
        assert code not in table, code


@pytest.mark.slow
def test_demo_shows_a_failed_step_with_its_error_and_exits_non_zero(tmp_path: Path) -> None:
    broken = tmp_path / "nurture.yaml"
    # A workflow HubSpot does not have: the Pricing enrollment fails for good.
    broken.write_text((ROOT / "config/nurture.yaml").read_text().replace("workflow: 5102", "workflow: 5999"))
    result = CliRunner().invoke(main, ["demo", "--config", str(broken)])
    assert result.exit_code == 1, result.output
    assert "Deal Acme expansion (lost: Pricing): failed in part" in result.output
    assert "Dana Lee     FAILED: " in result.output and "5999" in result.output
    assert "handoff(s) failed" in result.output


@pytest.mark.slow
def test_demo_verbose_shows_the_worker_s_own_log_lines() -> None:
    result = CliRunner().invoke(main, ["demo", "--verbose"])
    assert result.exit_code == 0, result.output
    assert "handoff_worker." in result.output
    assert "SecurityWarning" not in result.output
