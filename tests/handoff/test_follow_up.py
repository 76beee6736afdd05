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


def test_follow_up_date_is_set_in_the_handoffs_own_write(
    hub: SandboxServer, engine_with: Callable[[str], HandoffEngine]
) -> None:
    hub.control.lose_deal("2001", "Pricing")
    run = engine_with("    follow_up_after_days: 90\n").handoff_deal("2001", "webhook")
    assert run.outcome == "handed_off"
    for contact_id in ("3001", "3002"):
        assert contact_properties(hub, contact_id)["handoff_follow_up_date"] == "2027-03-01"
    # The same calls as a handoff without a follow-up date (test_engine's first test counts them).
    assert run.api_calls == 10
    updates = [r for r in hub.control.requests("/crm/v3/objects/contacts/batch/update")]
    assert len(updates) == 2  # the clear, then the set carrying the date with the stage and markers


def test_without_follow_up_days_no_date_is_written(
    hub: SandboxServer, engine_with: Callable[[str], HandoffEngine]
) -> None:
    hub.control.lose_deal("2001", "Pricing")
    run = engine_with("").handoff_deal("2001", "webhook")
    assert run.outcome == "handed_off" and run.api_calls == 10
    assert not contact_properties(hub, "3001").get("handoff_follow_up_date")
