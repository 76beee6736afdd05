"""What one handoff costs in HubSpot calls, pinned per case by the sandbox's request log (what
HubSpot would have seen), with the pipelines and workflow ids cached as in a running worker. See
docs/performance.md, "API economy", for the lower bound these meet."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from handoff_worker.handoff.engine import HandoffEngine
from handoff_worker.sandbox.testing import SandboxServer
from tests.handoff.conftest import TEST_RULES_YAML

GET_DEAL = "GET /crm/v3/objects/deals/{id}"
DEAL_CONTACTS = "GET /crm/v4/objects/deals/{id}/associations/contacts"
READ_CONTACTS = "POST /crm/v3/objects/contacts/batch/read"
CONTACT_DEALS = "POST /crm/v4/associations/contacts/deals/batch/read"
READ_DEALS = "POST /crm/v3/objects/deals/batch/read"
UPDATE_CONTACTS = "POST /crm/v3/objects/contacts/batch/update"
ENROLL = "POST /automation/v2/workflows/{id}/enrollments/contacts/{email}"
UNENROLL = "DELETE /automation/v2/workflows/{id}/enrollments/contacts/{email}"


def calls(hub: SandboxServer) -> list[str]:
    """The HubSpot calls logged since the last clear, ids and emails as placeholders."""
    return [
        _route(r["method"], r["path"]) for r in hub.control.requests("/") if not r["path"].startswith("/_")
    ]


def asked_for(hub: SandboxServer, route: str) -> list[list[str]]:
    """The ids each logged call of this batch route asked about."""
    return [
        sorted(str(i["id"]) for i in (r["body"] or {}).get("inputs", []))
        for r in hub.control.requests("/")
        if _route(r["method"], r["path"]) == route
    ]


def _route(method: str, path: str) -> str:
    route = re.sub(r"/\d+", "/{id}", path)
    return f"{method} {re.sub(r'/[^/]*@[^/]*$', '/{email}', route)}"


def warm(engine: HandoffEngine) -> None:
    engine.pipelines.catalog(engine.rules_source()[0].deals)
    rules = engine.rules_source()[0]
    engine.workflow_ids.legacy_ids(
        [n.workflow_id for r in rules.reasons for n in r.nurtures if n.workflow_id]
    )


def new_contact(hub: SandboxServer, stage: str = "salesqualifiedlead", email: str = "x@example.com") -> str:
    return str(hub.control.rep_create("contacts", {"lifecyclestage": stage, "email": email})["id"])


def new_deal(hub: SandboxServer, contacts: list[str], stage: str = "qualifiedtobuy") -> str:
    created = hub.control.rep_create(
        "deals", {"dealname": "Economy deal", "pipeline": "default", "dealstage": stage}
    )
    for contact_id in contacts:
        hub.control.associate(created["id"], contact_id)
    return str(created["id"])


def test_a_recycled_deal_reads_its_contacts_once(hub: SandboxServer, engine: HandoffEngine) -> None:
    first, second = new_contact(hub), new_contact(hub, stage="lead", email="y@example.com")
    deal = new_deal(hub, [first, second])
    hub.control.lose_deal(deal, "Pricing")
    warm(engine)
    hub.control.clear_requests()
    run = engine.handoff_deal(deal)
    assert run.outcome == "handed_off" and run.contacts[first].outcome == "recycled"
    # The set's answer shows the stage each contact now has: no read after the writes. `second`
    # is at lead already, so only `first` is cleared.
    assert calls(hub) == [
        GET_DEAL,
        DEAL_CONTACTS,
        READ_CONTACTS,
        CONTACT_DEALS,
        UPDATE_CONTACTS,
        UPDATE_CONTACTS,
        ENROLL,
        ENROLL,
    ]
    assert run.api_calls == 8


def test_a_reason_that_nurtures_nobody_reads_no_contact(hub: SandboxServer, engine: HandoffEngine) -> None:
    hub.control.lose_deal("2001", "Competitor")
    warm(engine)
    hub.control.clear_requests()
    run = engine.handoff_deal("2001")
    assert run.outcome == "handed_off"
    assert {c.why.split(":")[0] for c in run.contacts.values()} == {"not_recycled"}
    # The contact ids stay: a contact with a running nurture would have it ended (journey.py).
    assert calls(hub) == [GET_DEAL, DEAL_CONTACTS]


def test_a_reason_that_nurtures_nobody_reads_only_the_contacts_it_takes_out_of_a_nurture(
    hub: SandboxServer, engine: HandoffEngine
) -> None:
    nurtured, never = new_contact(hub), new_contact(hub, email="n@example.com")
    recycled = new_deal(hub, [nurtured])
    hub.control.lose_deal(recycled, "Pricing")
    assert engine.handoff_deal(recycled).outcome == "handed_off"
    later = new_deal(hub, [nurtured, never], stage="closedlost")
    hub.control.rep_update("deals", later, {"closed_lost_reason": "Competitor"})
    hub.control.clear_requests()
    run = engine.handoff_deal(later)
    assert run.outcome == "handed_off" and run.contacts[never].why.startswith("not_recycled")
    assert engine.journeys.get(nurtured) is not None
    assert asked_for(hub, READ_CONTACTS) == [[nurtured]]
    # Ending a nurture does not ask about other deals; it leaves the workflow it entered.
    assert calls(hub) == [GET_DEAL, DEAL_CONTACTS, READ_CONTACTS, UNENROLL]


def test_other_deals_are_read_only_for_contacts_they_can_change(
    hub: SandboxServer, engine: HandoffEngine
) -> None:
    customer = new_contact(hub, stage="customer", email="c@example.com")
    free = new_contact(hub, email="f@example.com")
    deal = new_deal(hub, [customer, free])
    hub.control.lose_deal(deal, "Pricing")
    warm(engine)
    hub.control.clear_requests()
    run = engine.handoff_deal(deal)
    assert run.contacts[customer].why.startswith("customer") and run.contacts[free].outcome == "recycled"
    assert asked_for(hub, CONTACT_DEALS) == [[free]]


def test_a_deal_of_customers_only_reads_no_other_deals(hub: SandboxServer, engine: HandoffEngine) -> None:
    customer = new_contact(hub, stage="customer", email="c@example.com")
    deal = new_deal(hub, [customer])
    hub.control.lose_deal(deal, "Pricing")
    warm(engine)
    hub.control.clear_requests()
    run = engine.handoff_deal(deal)
    assert run.contacts[customer].why.startswith("customer")
    assert calls(hub) == [GET_DEAL, DEAL_CONTACTS, READ_CONTACTS]


def test_no_other_deal_read_when_the_yaml_checks_no_deals(
    hub: SandboxServer, engine_for: Callable[..., HandoffEngine], rules_path: Path
) -> None:
    rules_path.write_text(
        TEST_RULES_YAML.replace(
            "version: 1\n",
            "version: 1\nrecycling:\n  skip_contacts_with_open_deals: false\n  protect_customers: false\n",
        )
    )
    engine = engine_for()
    shared = new_contact(hub)
    deal = new_deal(hub, [shared])
    new_deal(hub, [shared])  # still open: with the rule off it does not hold the contact back
    hub.control.lose_deal(deal, "Pricing")
    warm(engine)
    hub.control.clear_requests()
    run = engine.handoff_deal(deal)
    assert run.contacts[shared].outcome == "recycled"
    assert CONTACT_DEALS not in calls(hub) and READ_DEALS not in calls(hub)


def test_a_rerun_of_a_finished_loss_reads_no_contact(hub: SandboxServer, engine: HandoffEngine) -> None:
    hub.control.lose_deal("2001", "Pricing")
    warm(engine)
    assert engine.handoff_deal("2001").outcome == "handed_off"
    hub.control.clear_requests()
    again = engine.handoff_deal("2001", "redelivery")
    assert {c.why.split(":")[0] for c in again.contacts.values()} == {"already_recycled"}
    assert calls(hub) == [GET_DEAL, DEAL_CONTACTS]


def test_a_stage_that_did_not_stick_is_seen_in_the_answer_and_written_again(
    hub: SandboxServer, engine: HandoffEngine
) -> None:
    contact = new_contact(hub, stage="opportunity")
    deal = new_deal(hub, [contact])
    hub.control.lose_deal(deal, "Pricing")
    warm(engine)
    # HubSpot answers the first clear with success and keeps the stage; the second clear goes in.
    hub.control.ignore_writes("contacts", "lifecyclestage", object_id=contact, value="", count=1)
    hub.control.clear_requests()
    run = engine.handoff_deal(deal)
    assert run.contacts[contact].outcome == "recycled"
    assert hub.control.object("contacts", contact)["properties"]["lifecyclestage"] == "lead"
    # clear + set, the set's answer still showing 'opportunity', then clear + set once more.
    assert calls(hub) == [GET_DEAL, DEAL_CONTACTS, READ_CONTACTS, CONTACT_DEALS] + [UPDATE_CONTACTS] * 4 + [
        ENROLL
    ]
