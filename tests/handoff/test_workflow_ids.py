"""Workflow ids as marketers copy them from the workflow's URL (the v4 flow id): the engine enrolls
by the legacy id HubSpot's enrollment API wants, mapped once and kept in Redis."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis

from handoff_worker.handoff.engine import HandoffEngine
from handoff_worker.handoff.workflow_ids import WorkflowIds, workflow_id_key

# 1705102 is the flow id of the sandbox's legacy workflow 5102 ("Nurture - Pricing").
RULES = """\
version: 1
reasons:
  Pricing:
    nurture:
      - workflow: {pricing}
        name: Pricing nurture
  Feature Missing:
    nurture:
      - workflow: 1705104
        name: Feature nurture
  Competitor:
    recycle: false
"""


@pytest.fixture(params=["1705102", "5102"], ids=["flow id", "legacy id"])
def configured_id(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def rules_path(tmp_path: Path, configured_id: str) -> Path:
    path = tmp_path / "nurture.yaml"
    path.write_text(RULES.format(pricing=configured_id))
    return path


def mapping_calls(hub: Any) -> int:
    return len(hub.control.requests("/automation/v4/workflow-id-mappings"))


def test_enrollment_uses_the_legacy_id_whichever_id_the_yaml_holds(
    hub: Any, engine: HandoffEngine, configured_id: str, redis_conn: redis.Redis
) -> None:
    hub.control.lose_deal("2001", "Pricing")
    run = engine.handoff_deal("2001")
    assert run.outcome == "handed_off", run.errors
    assert sorted(hub.control.enrollments()["5102"]["contactIds"]) == ["3001", "3002"]
    assert sorted(engine.gateway.current_enrollments("3001")) == ["5102"]
    # Asked once (the first enrollment), then read from Redis by every process.
    assert mapping_calls(hub) == 1
    assert redis_conn.get(workflow_id_key(configured_id)) == "5102"
    hub.control.lose_deal("2002", "Pricing")
    assert engine.handoff_deal("2002").outcome == "handed_off"
    assert mapping_calls(hub) == 1


def test_a_cold_cache_costs_one_mapping_call_for_the_whole_file(
    hub: Any, engine: HandoffEngine, redis_conn: redis.Redis
) -> None:
    hub.control.lose_deal("2001", "Pricing")
    engine.handoff_deal("2001")
    # Every workflow id of the file was mapped with the first enrollment's call...
    assert mapping_calls(hub) == 1
    assert redis_conn.get(workflow_id_key("1705104")) == "5104"
    # ...so another reason's workflow costs no mapping call of its own.
    hub.control.lose_deal("2002", "Feature Missing")
    assert engine.handoff_deal("2002").outcome == "handed_off"
    assert mapping_calls(hub) == 1
    assert hub.control.enrollments()["5104"]["contactIds"] == ["3003"]


def test_one_mapping_call_for_many_ids(hub: Any, engine: HandoffEngine, redis_conn: redis.Redis) -> None:
    ids = WorkflowIds(redis_conn, engine.gateway)
    assert ids.legacy_ids(["1705102", "1705104", "5103", "999999"]) == {
        "1705102": "5102",
        "1705104": "5104",
        "5103": "5103",  # not a flow id: a legacy id already
        "999999": "999999",  # unknown either way: enrollment will say the workflow does not exist
    }
    assert mapping_calls(hub) == 1
