"""Dead-lettered handoffs: listed by `failures`, run again by `replay` once the fault is fixed."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from ops_support import OpsEnv, seed_lost_deal

from handoff_worker.commands.ops import failures_command, replay_command
from handoff_worker.handoff.deadletter import list_failures


@pytest.fixture
def cli_env(ops: OpsEnv, monkeypatch: pytest.MonkeyPatch) -> OpsEnv:
    for name, value in ops.env().items():
        monkeypatch.setenv(name, value)
    return ops


def test_replay_after_the_fault_is_fixed_removes_the_dead_letter_and_keeps_going_past_failures(
    cli_env: OpsEnv,
) -> None:
    ops = cli_env
    # Both reasons point at workflows the portal does not have: each handoff fails for good.
    seed_lost_deal(ops, "8501", "Not Ready", {"8601": "salesqualifiedlead"})
    seed_lost_deal(ops, "8502", "Feature Missing", {"8602": "salesqualifiedlead"})
    engine = ops.wiring().engine
    assert engine.handoff_deal("8501", "webhook").outcome == "partial_failure"
    assert engine.handoff_deal("8502", "webhook").outcome == "partial_failure"

    listed = CliRunner().invoke(failures_command, [])
    assert listed.exit_code == 0, listed.output
    assert "deal:8501" in listed.output and "deal:8502" in listed.output
    assert "5999" in listed.output  # the error says which workflow is wrong
    as_json = json.loads(CliRunner().invoke(failures_command, ["--json"]).output)
    assert {(f["object_id"], f["attempts"]) for f in as_json} == {("8501", 1), ("8502", 1)}

    # Someone creates the missing "Not Ready" workflow; "Feature Missing" stays broken.
    ops.server.control.seed({"workflows": [{"id": 5999, "name": "Nurture - Not Ready (new)"}]})
    replayed = CliRunner().invoke(replay_command, ["--all"])

    assert replayed.exit_code == 1, replayed.output  # one replay still fails
    assert "replayed 2: handed off 1, failed 1" in replayed.output
    assert "deal:8502" in replayed.output
    assert [f.object_id for f in list_failures(ops.redis)] == ["8502"]
    assert ops.server.control.enrollments()["5999"]["contactIds"] == ["8601"]
    assert ops.server.control.object("contacts", "8601")["properties"]["lifecyclestage"] == "lead"
    assert list_failures(ops.redis)[0].attempts == 2


def test_replay_of_one_deal_and_of_an_unknown_one(cli_env: OpsEnv) -> None:
    ops = cli_env
    seed_lost_deal(ops, "8511", "Not Ready", {"8611": "salesqualifiedlead"})
    ops.wiring().engine.handoff_deal("8511", "webhook")
    ops.server.control.seed({"workflows": [{"id": 5999, "name": "Nurture - Not Ready (new)"}]})

    result = CliRunner().invoke(replay_command, ["--deal", "8511", "--deal", "999"])

    assert result.exit_code == 0, result.output
    assert "deal:999 is not in the dead-letter record" in result.output
    assert "replayed 1: handed off 1, failed 0" in result.output
    assert list_failures(ops.redis) == []
    assert "no failed handoff is waiting" in CliRunner().invoke(failures_command, []).output


def test_replay_of_a_deal_reopened_since_it_failed_says_so_in_words(cli_env: OpsEnv) -> None:
    ops = cli_env
    seed_lost_deal(ops, "8521", "Not Ready", {"8621": "salesqualifiedlead"})
    assert ops.wiring().engine.handoff_deal("8521", "webhook").outcome == "partial_failure"
    ops.server.control.rep_update("deals", "8521", {"dealstage": "appointmentscheduled"})

    result = CliRunner().invoke(replay_command, ["--deal", "8521"])

    assert result.exit_code == 0, result.output
    assert "replayed 1: handed off 0, failed 0; 1 still open: nothing to do" in result.output
    assert "deal_open" not in result.output


def test_replay_without_a_target_says_what_to_pass(cli_env: OpsEnv) -> None:
    result = CliRunner().invoke(replay_command, [])
    assert result.exit_code == 2
    assert "--all, or --deal ID" in result.output
