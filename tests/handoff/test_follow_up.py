"""The follow-up date a reason sets: written in the handoff's one batch update, as HubSpot takes a day."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis

from handoff_worker.handoff.engine import HandoffEngine
from handoff_worker.hubspot.gateway import build_gateway
from handoff_worker.nurture_config import RulesStore
from handoff_worker.sandbox.testing import SandboxServer
from handoff_worker.settings import Settings

RULES = """\
version: 1
reasons:
  Pricing:
    nurture:
      - workflow: 5102
        name: Pricing nurture
{follow_up}"""

# Late in the evening UTC: the date is the UTC day's, not the next one a local clock may show.
HANDED_OFF_AT = datetime(2026, 12, 1, 23, 30, tzinfo=UTC)


@pytest.fixture
def engine_with(
    tmp_path: Path, settings_for: Callable[..., Settings], redis_conn: redis.Redis
) -> Callable[[str], HandoffEngine]:
    def build(follow_up: str) -> HandoffEngine:
        path = tmp_path / "follow-up.yaml"
        path.write_text(RULES.format(follow_up=follow_up))
        settings = settings_for(HANDOFF_CONFIG=str(path))
        store = RulesStore(settings.handoff_config)
        return HandoffEngine(
            build_gateway(settings, redis_conn),
            redis_conn,
            store.current_with_version,
            clock=lambda: HANDED_OFF_AT,
        )

    return build


def contact_properties(hub: SandboxServer, contact_id: str) -> dict[str, str]:
    properties: dict[str, str] = hub.control.object("contacts", contact_id)["properties"]
    return properties


def lost_deal_of_two(hub: SandboxServer) -> tuple[str, list[str]]:
    contacts = [
        str(
            hub.control.rep_create(
                "contacts", {"lifecyclestage": "salesqualifiedlead", "email": f"{n}@example.com"}
            )["id"]
        )
        for n in ("a", "b")
    ]
    deal = str(
        hub.control.rep_create(
            "deals", {"dealname": "D", "pipeline": "default", "dealstage": "qualifiedtobuy"}
        )["id"]
    )
    for contact_id in contacts:
        hub.control.associate(deal, contact_id)
    hub.control.lose_deal(deal, "Pricing")
    return deal, contacts


def test_follow_up_date_is_set_in_the_handoffs_own_write(
    hub: SandboxServer, engine_with: Callable[[str], HandoffEngine]
) -> None:
    without, with_date = engine_with(""), engine_with("    follow_up_after_days: 90\n")
    warm_up, _ = lost_deal_of_two(hub)  # fills the pipeline and workflow id caches for both
    without.handoff_deal(warm_up)
    plain_deal, plain_contacts = lost_deal_of_two(hub)
    plain = without.handoff_deal(plain_deal)
    dated_deal, dated_contacts = lost_deal_of_two(hub)
    updates_before = len(hub.control.requests("/crm/v3/objects/contacts/batch/update"))
    dated = with_date.handoff_deal(dated_deal)
    assert dated.outcome == plain.outcome == "handed_off"
    for contact_id in dated_contacts:
        assert contact_properties(hub, contact_id)["handoff_follow_up_date"] == "2027-03-01"
    assert not contact_properties(hub, plain_contacts[0]).get("handoff_follow_up_date")
    # No call more than the same handoff without a follow-up date: the date rides in the set.
    assert dated.api_calls == plain.api_calls
    updates = len(hub.control.requests("/crm/v3/objects/contacts/batch/update")) - updates_before
    assert updates == 2  # the clear, then the set carrying the date with the stage and markers
