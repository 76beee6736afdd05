"""A deal lost, reopened and lost again with every webhook missed: the sweep tells the second loss
from the first by the loss itself (stage, close date, reason), not by the deal's id, and hands it
off. Asserted on the contact as HubSpot shows it (its workflows, its lists, its nurture property)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from ops_support import OpsEnv, build_env, recent_window, seed_lost_deal

from handoff_worker.handoff.inline import InlineSink
from handoff_worker.handoff.resync import ResyncRequest, ResyncSummary, run_locked
from handoff_worker.sandbox.testing import SandboxServer
from handoff_worker.testing import NURTURE_TRACK

RULES = """\
version: 1
reasons:
  Pricing:
    nurture:
      - workflow: 5102
        name: Pricing nurture
      - list: 702
        name: Pricing list
  Not Ready:
    nurture:
      - workflow: 5103
        name: Timing nurture
      - property: {name: nurture_track, value: quarterly_checkin}
        name: Quarterly check-in
"""


@pytest.fixture
def ops(ops_sandbox: SandboxServer, redis_url: str, tmp_path: Path) -> Iterator[OpsEnv]:
    rules = tmp_path / "nurture.yaml"
    rules.write_text(RULES)
    env = build_env(ops_sandbox, redis_url, HANDOFF_CONFIG=str(rules))
    yield env
    env.redis.close()


def sweep(ops: OpsEnv, deal_ids: tuple[str, ...] = ()) -> ResyncSummary:
    wiring = ops.wiring()
    since, until = recent_window()
    request = ResyncRequest(since=since, until=until, deal_ids=deal_ids)
    return run_locked(ops.redis, wiring.resync(InlineSink(wiring.engine)), request)


def shown(ops: OpsEnv, contact_id: str) -> dict[str, object]:
    return {
        "workflows": sorted(ops.gateway.current_enrollments(contact_id)),
        "on_pricing_list": contact_id in ops.gateway.list_members("702"),
        "track": ops.server.control.object("contacts", contact_id)["properties"].get("nurture_track") or "",
    }


PRICING = {"workflows": ["5102"], "on_pricing_list": True, "track": ""}
NOT_READY = {"workflows": ["5103"], "on_pricing_list": False, "track": "quarterly_checkin"}


@pytest.mark.parametrize("by_id", [False, True], ids=["sweep", "resync --deal"])
def test_reopened_and_lost_again_without_webhooks_is_handed_off(ops: OpsEnv, by_id: bool) -> None:
    ops.server.control.seed({"properties": {"contacts": [NURTURE_TRACK]}})
    seed_lost_deal(ops, "8301", "Pricing", {"8401": "salesqualifiedlead"})
    ops.server.control.rep_update("deals", "8301", {"closedate": "2026-11-02T10:00:00Z"})
    named = ("8301",) if by_id else ()
    first = sweep(ops, named)
    assert (first.queued, first.failed) == (1, 0), first.errors
    assert shown(ops, "8401") == PRICING

    # Reopened, then lost again with another reason and close date; no webhook reaches the worker.
    ops.server.control.rep_update("deals", "8301", {"dealstage": "qualifiedtobuy"})
    ops.server.control.rep_update(
        "deals",
        "8301",
        {"dealstage": "closedlost", "closed_lost_reason": "Not Ready", "closedate": "2026-12-01T09:00:00Z"},
    )
    second = sweep(ops, named)
    assert (second.already_done, second.queued, second.failed) == (0, 1, 0), second.errors
    # Out of the Pricing nurture (the deal's reopening brought the contact back to sales), into
    # Not Ready's: a new episode.
    assert shown(ops, "8401") == NOT_READY
    journey = ops.wiring().engine.journeys.get("8401")
    assert journey is not None and journey.episode.number == 2 and journey.episode.reason == "Not Ready"

    third = sweep(ops, named)
    assert (third.already_done, third.queued) == (1, 0)
