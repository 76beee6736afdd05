"""One journey per person, end to end: several lost deals of one contact, over the sandbox (real SDK
over HTTP, real Redis), asserted on what HubSpot shows for the contact (its enrollments, its list
memberships, its properties), read back through HubSpot's own read endpoints."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from handoff_worker.cli import main
from handoff_worker.domain.journey import JourneyState
from handoff_worker.handoff.engine import HandoffEngine
from handoff_worker.handoff.run_record import HandoffRun

# Workflow 5103 allows re-enrollment: HubSpot itself would enroll the contact a second time, so
# only the journey stands between a second loss and a second round of emails.
JOURNEY_RULES = """\
version: 1
recycling:
  second_loss: {policy}
reasons:
  Pricing:
    nurture:
      - workflow: 5103
        name: Pricing nurture
      - list: 702
        name: Pricing list
      - property: {{name: nurture_track, value: pricing}}
        name: Pricing track
  Feature Missing:
    nurture:
      - workflow: 5104
        name: Feature nurture
      - list: 701
        name: Feature list
  Competitor:
    recycle: false
"""


@pytest.fixture(params=["keep"])
def policy(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def rules_path(tmp_path: Path, policy: str) -> Path:
    path = tmp_path / "nurture.yaml"
    path.write_text(JOURNEY_RULES.format(policy=policy))
    return path


def second_deal_of(hub: Any, contact_id: str) -> str:
    created = hub.control.rep_create(
        "deals",
        {"dealname": "Second deal", "pipeline": "default", "dealstage": "qualifiedtobuy"},
    )
    hub.control.associate(created["id"], contact_id)
    return str(created["id"])


def as_hubspot_shows(engine: HandoffEngine, hub: Any, contact_id: str) -> dict[str, Any]:
    """The contact as HubSpot shows it: workflows it is in, lists it is on, its nurture property."""
    return {
        "workflows": sorted(engine.gateway.current_enrollments(contact_id)),
        "lists": sorted(
            list_id for list_id in ("701", "702") if contact_id in engine.gateway.list_members(list_id)
        ),
        "track": hub.control.object("contacts", contact_id)["properties"].get("nurture_track") or "",
    }


def enrollments_of(hub: Any, workflow_id: str, contact_id: str) -> int:
    """Enrollment calls HubSpot took for this contact (each would send the nurture's emails)."""
    return sum(
        1
        for a in hub.control.enrollments()[workflow_id]["attempts"]
        if a.get("contactId") == contact_id and a["outcome"] == "enrolled"
    )


PRICING_NURTURE = {"workflows": ["5103"], "lists": ["702"], "track": "pricing"}
FEATURE_NURTURE = {"workflows": ["5104"], "lists": ["701"], "track": ""}


def test_two_deals_of_one_contact_lost_together_enroll_it_once(
    hub: Any, engine_for: Callable[..., HandoffEngine]
) -> None:
    other = second_deal_of(hub, "3001")
    hub.control.lose_deal("2001", "Pricing")
    hub.control.lose_deal(other, "Pricing")
    runs: dict[str, HandoffRun] = {}
    failures: list[BaseException] = []

    def hand_off(deal_id: str) -> None:
        try:
            runs[deal_id] = engine_for().handoff_deal(deal_id, "webhook")
        except BaseException as exc:  # surfaced below: a thread's exception is otherwise lost
            failures.append(exc)

    threads = [threading.Thread(target=hand_off, args=(d,)) for d in ("2001", other)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures
    assert {r.outcome for r in runs.values()} == {"handed_off"}
    engine = engine_for()
    assert as_hubspot_shows(engine, hub, "3001") == PRICING_NURTURE
    assert enrollments_of(hub, "5103", "3001") == 1
    journey = engine.journeys.get("3001")
    assert journey is not None and journey.episode.number == 1
    assert sorted(journey.episode.source_ids) == sorted(["deal:2001:1", f"deal:{other}:1"])


def test_second_loss_after_a_handoff_keeps_the_nurture_by_default(hub: Any, engine: HandoffEngine) -> None:
    # Both lost (an open deal would keep the contact with sales); their handoffs one after the other.
    other = second_deal_of(hub, "3001")
    hub.control.lose_deal("2001", "Pricing")
    hub.control.lose_deal(other, "Feature Missing")
    assert engine.handoff_deal("2001").outcome == "handed_off"
    run = engine.handoff_deal(other)
    assert run.outcome == "handed_off"
    assert run.contacts["3001"].outcome == "skipped" and "in_nurture" in run.contacts["3001"].why
    assert as_hubspot_shows(engine, hub, "3001") == PRICING_NURTURE
    # A retry, a resync or a replay of either loss changes nothing.
    engine.handoff_deal(other)
    engine.handoff_deal("2001")
    assert as_hubspot_shows(engine, hub, "3001") == PRICING_NURTURE
    assert enrollments_of(hub, "5103", "3001") == 1 and enrollments_of(hub, "5104", "3001") == 0


@pytest.mark.parametrize("policy", ["switch"], indirect=True)
def test_second_loss_switches_to_the_later_reason_when_told(hub: Any, engine: HandoffEngine) -> None:
    other = second_deal_of(hub, "3001")
    hub.control.lose_deal("2001", "Pricing")
    hub.control.lose_deal(other, "Feature Missing")
    engine.handoff_deal("2001")
    assert as_hubspot_shows(engine, hub, "3001") == PRICING_NURTURE
    run = engine.handoff_deal(other)
    assert run.outcome == "handed_off"
    # Out of the Pricing workflow and list, its property cleared; into the Feature nurture.
    assert as_hubspot_shows(engine, hub, "3001") == FEATURE_NURTURE
    # 3002 was only on the first deal: untouched by the second loss.
    assert as_hubspot_shows(engine, hub, "3002") == PRICING_NURTURE
    # The first loss again (a resync) does not bring the Pricing nurture back.
    engine.handoff_deal("2001")
    assert as_hubspot_shows(engine, hub, "3001") == FEATURE_NURTURE
    assert enrollments_of(hub, "5103", "3001") == 1 and enrollments_of(hub, "5104", "3001") == 1


@pytest.mark.parametrize("policy", ["keep", "switch"], indirect=True)
def test_a_reason_that_never_nurtures_ends_the_nurture(hub: Any, engine: HandoffEngine) -> None:
    other = second_deal_of(hub, "3001")
    hub.control.lose_deal("2001", "Pricing")
    hub.control.lose_deal(other, "Competitor")
    engine.handoff_deal("2001")
    assert as_hubspot_shows(engine, hub, "3001") == PRICING_NURTURE
    assert engine.handoff_deal(other).outcome == "handed_off"
    assert as_hubspot_shows(engine, hub, "3001") == {"workflows": [], "lists": [], "track": ""}
    journey = engine.journeys.get("3001")
    assert journey is not None and journey.episode.nurtures == ()
    assert journey.episode.state is JourneyState.RECYCLED and journey.episode.reason == "Competitor"


def test_reason_filled_in_later_beside_a_handed_off_deal_enrolls_nothing_twice(
    hub: Any, engine: HandoffEngine
) -> None:
    other = second_deal_of(hub, "3001")
    hub.control.lose_deal("2001", "Pricing")
    hub.control.lose_deal(other, None)
    assert engine.handoff_deal(other).outcome == "waiting_for_reason"
    assert engine.handoff_deal("2001").outcome == "handed_off"
    hub.control.rep_update("deals", other, {"closed_lost_reason": "Pricing"})
    run = engine.handoff_deal(other, "webhook")
    assert run.outcome == "handed_off" and run.contacts["3001"].outcome == "skipped"
    assert as_hubspot_shows(engine, hub, "3001") == PRICING_NURTURE
    assert enrollments_of(hub, "5103", "3001") == 1


def test_the_common_path_costs_no_more_calls_with_the_journey(hub: Any, engine: HandoffEngine) -> None:
    """A single lost deal whose contacts were never recycled: the journey is Redis state only."""
    hub.control.lose_deal("2002", "Feature Missing")
    engine.workflow_ids.legacy_ids(["5103", "5104"])  # warm, as in a running worker
    engine.pipelines.catalog(engine.rules_source()[0].deals)
    run = engine.handoff_deal("2002")
    assert run.outcome == "handed_off"
    # get deal, assoc, contacts, assoc->deals, clear, set, list add, one enrollment.
    assert run.api_calls == 8


def test_journey_command_shows_where_a_contact_stands(
    hub: Any, engine: HandoffEngine, redis_url: str, rules_path: Path
) -> None:
    other = second_deal_of(hub, "3001")
    hub.control.lose_deal("2001", "Pricing")
    hub.control.lose_deal(other, "Feature Missing")
    engine.handoff_deal("2001")
    engine.handoff_deal(other)
    env = {"REDIS_URL": redis_url, "HANDOFF_CONFIG": str(rules_path), "HUBSPOT_BASE_URL": hub.url}
    result = CliRunner().invoke(main, ["journey", "3001", "9999"], env=env)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("contact 3001: episode 1 recycled; reason 'Pricing'; in workflow:5103, ")
    assert f"losses deal:2001:1 (new_episode), deal:{other}:1 (keep)" in lines[0]
    assert lines[1] == "contact 9999: no journey (never handed to marketing)"
    as_json = json.loads(CliRunner().invoke(main, ["journey", "3001", "--json"], env=env).stdout)
    assert as_json["3001"]["current"]["reason"] == "Pricing" and as_json["3001"]["past"] == []


@pytest.mark.parametrize("policy", ["keep", "switch"], indirect=True)
def test_a_new_deal_lost_after_the_contact_was_recycled_starts_a_new_episode(
    hub: Any, engine: HandoffEngine
) -> None:
    """Sales opened a new deal with the recycled contact (the episode started an hour before), and
    lost it: whatever the second-loss policy, that is a new episode with the new reason's nurture."""
    an_hour_ago = HandoffEngine(
        engine.gateway,
        engine.redis,
        engine.rules_source,
        clock=lambda: datetime.now(UTC) - timedelta(hours=1),
    )
    hub.control.lose_deal("2001", "Pricing")
    assert an_hour_ago.handoff_deal("2001").outcome == "handed_off"
    assert as_hubspot_shows(engine, hub, "3001") == PRICING_NURTURE
    new_deal = second_deal_of(hub, "3001")
    hub.control.lose_deal(new_deal, "Feature Missing")
    assert engine.handoff_deal(new_deal).outcome == "handed_off"
    assert as_hubspot_shows(engine, hub, "3001") == FEATURE_NURTURE
    journey = engine.journeys.get("3001")
    assert journey is not None and journey.episode.number == 2
    (past,) = engine.journeys.past_episodes("3001")
    assert past.episode.came_back_how == f"deal {new_deal} created"
