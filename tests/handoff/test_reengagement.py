"""Sales works a recycled contact again: the worker takes it out of its nurture. Over the sandbox
(real SDK over HTTP, real Redis), asserted on what HubSpot shows for the contact; each run is the
one the webhook's task makes (the deal's or the contact's handoff, re-reading HubSpot)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from handoff_worker.domain.events import EventKind, UnitKind, WatchedProperties, decide, parse_events
from handoff_worker.domain.journey import JourneyState
from handoff_worker.handoff.engine import HandoffEngine
from handoff_worker.handoff.resync import ResyncRequest, ResyncSummary
from handoff_worker.handoff.resync.came_back import CameBackRevisit
from handoff_worker.intake.app import watched_properties
from handoff_worker.nurture_config import RulesStore
from handoff_worker.settings import Settings
from handoff_worker.wiring import build_wiring

RULES = """\
version: 1
reasons:
  Pricing:
    nurture:
      - workflow: 5103
        name: Pricing nurture
      - list: 702
        name: Pricing list
      - property: {{name: nurture_track, value: pricing}}
        name: Pricing track
{came_back}
"""
IN_NURTURE = {"workflows": ["5103"], "lists": ["702"], "track": "pricing"}
OUT_OF_NURTURE = {"workflows": [], "lists": [], "track": ""}


@pytest.fixture(params=[""])
def came_back(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def rules_path(tmp_path: Path, came_back: str) -> Path:
    path = tmp_path / "nurture.yaml"
    path.write_text(RULES.format(came_back=came_back))
    return path


def shows(engine: HandoffEngine, hub: Any, contact_id: str) -> dict[str, Any]:
    """The contact as HubSpot shows it, through HubSpot's own read endpoints."""
    return {
        "workflows": sorted(engine.gateway.current_enrollments(contact_id)),
        "lists": ["702"] if contact_id in engine.gateway.list_members("702") else [],
        "track": hub.control.object("contacts", contact_id)["properties"].get("nurture_track") or "",
    }


def recycled(engine: HandoffEngine, hub: Any) -> None:
    """Deal 2001 (contacts 3001, 3002) lost for Pricing and handed off: both nurtured."""
    hub.control.lose_deal("2001", "Pricing")
    assert engine.handoff_deal("2001", "webhook").outcome == "handed_off"
    assert shows(engine, hub, "3001") == IN_NURTURE


def came_back_how(engine: HandoffEngine, contact_id: str) -> str | None:
    journey = engine.journeys.get(contact_id)
    assert journey is not None
    assert journey.episode.state is JourneyState.CAME_BACK
    assert journey.episode.came_back_at
    return journey.episode.came_back_how


def test_a_new_open_deal_takes_the_contact_out_of_its_nurture(hub: Any, engine: HandoffEngine) -> None:
    recycled(engine, hub)
    deal = hub.control.rep_create(
        "deals", {"dealname": "Again", "pipeline": "default", "dealstage": "qualifiedtobuy"}
    )
    hub.control.associate(deal["id"], "3001")
    run = engine.handoff_deal(str(deal["id"]), "webhook")
    assert run.outcome == "deal_open" and run.contacts["3001"].outcome == "came_back"
    assert shows(engine, hub, "3001") == OUT_OF_NURTURE
    assert came_back_how(engine, "3001") == f"deal {deal['id']} opened"
    # 3002 is not on the new deal: marketing keeps it.
    assert shows(engine, hub, "3002") == IN_NURTURE
    # The same event again (a retry, a duplicate) changes nothing more.
    assert engine.handoff_deal(str(deal["id"]), "webhook").contacts == {}


def test_the_new_deal_lost_later_starts_a_new_episode(hub: Any, engine: HandoffEngine) -> None:
    recycled(engine, hub)
    deal = hub.control.rep_create(
        "deals", {"dealname": "Again", "pipeline": "default", "dealstage": "qualifiedtobuy"}
    )
    hub.control.associate(deal["id"], "3001")
    engine.handoff_deal(str(deal["id"]), "webhook")
    assert shows(engine, hub, "3001") == OUT_OF_NURTURE
    hub.control.lose_deal(str(deal["id"]), "Pricing")
    assert engine.handoff_deal(str(deal["id"]), "webhook").outcome == "handed_off"
    journey = engine.journeys.get("3001")
    assert journey is not None and journey.episode.number == 2
    assert journey.episode.state is JourneyState.RECYCLED
    past = engine.journeys.past_episodes("3001")
    assert [p.episode.came_back_how for p in past] == [f"deal {deal['id']} opened"]
    assert shows(engine, hub, "3001")["lists"] == ["702"]


def test_a_reopened_deal_takes_its_contacts_out(hub: Any, engine: HandoffEngine) -> None:
    recycled(engine, hub)
    hub.control.rep_update("deals", "2001", {"dealstage": "qualifiedtobuy"})
    run = engine.handoff_deal("2001", "webhook")
    assert {c: r.outcome for c, r in run.contacts.items()} == {"3001": "came_back", "3002": "came_back"}
    assert shows(engine, hub, "3001") == OUT_OF_NURTURE and shows(engine, hub, "3002") == OUT_OF_NURTURE
    assert came_back_how(engine, "3001") == "deal 2001 reopened"


def test_lifecycle_stage_moved_to_a_sales_stage(hub: Any, engine: HandoffEngine) -> None:
    recycled(engine, hub)
    hub.control.rep_update("contacts", "3001", {"lifecyclestage": "salesqualifiedlead"})
    run = engine.handoff_contact("3001", "webhook")
    assert run.outcome == "not_unqualified" and run.contacts["3001"].outcome == "came_back"
    assert shows(engine, hub, "3001") == OUT_OF_NURTURE
    assert came_back_how(engine, "3001") == "lifecycle stage set to salesqualifiedlead"


def test_lead_status_set_by_sales_but_not_the_one_it_had(hub: Any, engine: HandoffEngine) -> None:
    # The contact still shows OPEN_DEAL from its lost deal: that is no sign of sales.
    hub.control.rep_update("contacts", "3001", {"hs_lead_status": "OPEN_DEAL"})
    recycled(engine, hub)
    assert engine.handoff_contact("3001", "webhook").contacts == {}
    assert shows(engine, hub, "3001") == IN_NURTURE
    hub.control.rep_update("contacts", "3001", {"hs_lead_status": "CONNECTED"})
    assert engine.handoff_contact("3001", "webhook").contacts["3001"].outcome == "came_back"
    assert shows(engine, hub, "3001") == OUT_OF_NURTURE
    assert came_back_how(engine, "3001") == "lead status set to CONNECTED"


@pytest.mark.parametrize(
    "came_back",
    ["came_back:\n  new_open_deal: false\n  lifecycle_stages: []\n  lead_statuses: []"],
    indirect=True,
)
def test_triggers_turned_off_in_the_yaml_keep_the_nurture(hub: Any, engine: HandoffEngine) -> None:
    recycled(engine, hub)
    deal = hub.control.rep_create(
        "deals", {"dealname": "Again", "pipeline": "default", "dealstage": "qualifiedtobuy"}
    )
    hub.control.associate(deal["id"], "3001")
    hub.control.rep_update(
        "contacts", "3001", {"lifecyclestage": "opportunity", "hs_lead_status": "IN_PROGRESS"}
    )
    engine.handoff_deal(str(deal["id"]), "webhook")
    engine.handoff_contact("3001", "webhook")
    assert shows(engine, hub, "3001") == IN_NURTURE
    # Reopening is still on (its default).
    hub.control.rep_update("deals", "2001", {"dealstage": "qualifiedtobuy"})
    engine.handoff_deal("2001", "webhook")
    assert shows(engine, hub, "3001") == OUT_OF_NURTURE


def test_the_cost_of_a_reengagement_in_hubspot_calls(hub: Any, engine: HandoffEngine) -> None:
    recycled(engine, hub)
    engine.workflow_ids.legacy_ids(["5103"])  # warm, as in a running worker
    deal = hub.control.rep_create(
        "deals", {"dealname": "Again", "pipeline": "default", "dealstage": "qualifiedtobuy"}
    )
    hub.control.associate(deal["id"], "3001")
    run = engine.handoff_deal(str(deal["id"]), "webhook")
    # get deal, its contacts, their emails, one unenrollment, one list removal, one property clear.
    assert run.api_calls == 6
    # An open deal of contacts nobody recycled: the deal and its contacts only.
    other = hub.control.rep_create(
        "deals", {"dealname": "Fresh", "pipeline": "default", "dealstage": "qualifiedtobuy"}
    )
    hub.control.associate(other["id"], "3003")
    assert engine.handoff_deal(str(other["id"]), "webhook").api_calls == 2


def test_the_intake_routes_what_re_engagement_needs(rules_path: Path) -> None:
    watched = watched_properties(RulesStore(rules_path).current())
    assert "lifecyclestage" in watched.contact and "hs_lead_status" in watched.contact
    events = parse_events(
        [
            {"subscriptionType": "deal.creation", "objectId": 9001, "occurredAt": 1},
            {
                "subscriptionType": "deal.associationChange",
                "objectId": 9001,
                "associationType": "CONTACT_TO_DEAL",
                "fromObjectId": 3001,
                "toObjectId": 9002,
            },
            {
                "subscriptionType": "contact.propertyChange",
                "objectId": 3001,
                "propertyName": "lifecyclestage",
                "propertyValue": "opportunity",
                "changeSource": "CRM_UI",
                "sourceId": "userId:1",
            },
            {
                "subscriptionType": "contact.propertyChange",
                "objectId": 3001,
                "propertyName": "lifecyclestage",
                "propertyValue": "lead",
                "changeSource": "INTEGRATION",
                "sourceId": "77",
            },
        ]
    )
    units = [decide(e, watched=watched, app_id="77").units for e in events]
    assert units[0][0].kind is UnitKind.DEAL and units[0][0].object_id == "9001"
    assert units[1][0].kind is UnitKind.DEAL and units[1][0].object_id == "9002"
    assert units[2][0].kind is UnitKind.CONTACT and units[2][0].object_id == "3001"
    assert units[3] == ()  # our own write
    assert events[1].kind is EventKind.ASSOCIATION_CHANGE
    assert not WatchedProperties(deal=frozenset(), contact=frozenset()).contact


class InlineSink:
    """Runs each record the sweep sends as its task would, right here."""

    def __init__(self, engine: HandoffEngine) -> None:
        self.engine = engine
        self.contacts: list[str] = []

    def deal(self, deal_id: str) -> bool:
        self.engine.handoff_deal(deal_id, "resync")
        return True

    def contact(self, contact_id: str) -> bool:
        self.contacts.append(contact_id)
        self.engine.handoff_contact(contact_id, "resync")
        return True


def sweep(engine: HandoffEngine, settings_for: Callable[..., Settings], redis_conn: redis.Redis) -> Any:
    """The scheduled sweep over the last hour, as `resync` runs it, handing off inline."""
    wired = build_wiring(settings_for(), redis_conn)
    sink = InlineSink(engine)
    now = datetime.now(UTC)
    summary = wired.resync(sink).run(ResyncRequest(since=now - timedelta(hours=1), until=now))
    assert summary.ok, summary.errors
    return summary, sink


def new_open_deal_of(hub: Any, contact_id: str) -> None:
    deal = hub.control.rep_create(
        "deals", {"dealname": "New", "pipeline": "default", "dealstage": "qualifiedtobuy"}
    )
    hub.control.associate(deal["id"], contact_id)


MISSED_BY_WEBHOOKS = {
    "new open deal": lambda hub: new_open_deal_of(hub, "3001"),
    "reopened deal": lambda hub: hub.control.rep_update("deals", "2001", {"dealstage": "qualifiedtobuy"}),
    "lifecycle stage": lambda hub: hub.control.rep_update(
        "contacts", "3001", {"lifecyclestage": "opportunity"}
    ),
    "lead status": lambda hub: hub.control.rep_update("contacts", "3001", {"hs_lead_status": "IN_PROGRESS"}),
}


@pytest.mark.parametrize("trigger", sorted(MISSED_BY_WEBHOOKS))
def test_the_sweep_catches_a_reengagement_webhooks_missed(
    hub: Any,
    engine: HandoffEngine,
    settings_for: Callable[..., Settings],
    redis_conn: redis.Redis,
    trigger: str,
) -> None:
    recycled(engine, hub)
    summary, _ = sweep(engine, settings_for, redis_conn)  # nothing happened yet: nobody is sent
    assert (summary.recycled_checked, summary.came_back) == (2, 0)
    MISSED_BY_WEBHOOKS[trigger](hub)  # no task runs: every webhook was missed
    summary, sink = sweep(engine, settings_for, redis_conn)
    assert "3001" in sink.contacts and summary.came_back >= 1
    assert shows(engine, hub, "3001") == OUT_OF_NURTURE
    assert engine.journeys.get("3001").episode.state is JourneyState.CAME_BACK  # type: ignore[union-attr]
    # The next sweep finds nobody left to take back.
    summary, sink = sweep(engine, settings_for, redis_conn)
    assert "3001" not in sink.contacts


def test_the_cost_of_the_sweeps_re_engagement_step(
    hub: Any, engine: HandoffEngine, settings_for: Callable[..., Settings], redis_conn: redis.Redis
) -> None:
    recycled(engine, hub)
    wired = build_wiring(settings_for(), redis_conn)
    step = CameBackRevisit(redis_conn, wired.gateway, wired.rules, wired.engine.reengagement)
    wired.engine.pipelines.catalog(wired.rules.deals)  # warm, as in a running worker
    before = wired.gateway.calls_made
    summary = ResyncSummary()
    step.revisit(summary, dry_run=False, sink=InlineSink(engine))
    # The 2 recycled contacts: one contact read, one association read, one deal read.
    assert (summary.recycled_checked, summary.came_back) == (2, 0)
    assert wired.gateway.calls_made - before == 3
