"""The README's first command: the whole story, in one process, on embedded defaults."""

from pathlib import Path

import pytest

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
    assert enrolled["5102"] == ["3001", "3002"]  # Pricing
    assert enrolled["5103"] == ["3003"]  # Not Ready
    assert enrolled["5104"] == []  # Feature Missing: Ria still has an open deal
    assert enrolled["5101"] == []  # Competitor is never nurtured
    attempts = [a for e in result.enrollments.values() if isinstance(e, dict) for a in e.get("attempts", [])]
    assert len(attempts) == 3, "each contact enrolled exactly once, never asked twice"

    assert sorted(result.list_memberships["702"]["memberIds"]) == ["3001", "3002"]
    assert result.list_memberships["701"]["memberIds"] == ["3006"]
    assert contacts["3003"]["nurture_track"] == "quarterly_checkin"

    subjects = [t["properties"]["hs_task_subject"] for t in result.tasks]
    assert subjects == ["Add a lost reason to Globex pilot"]
    assert result.api_calls > 0

    table = format_result(result)
    assert "Dana Lee" in table and "open_deal" in table and "not_recycled" in table
