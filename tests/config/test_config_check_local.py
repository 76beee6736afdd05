"""`handoff-worker config check` without HubSpot: exit codes and what a marketer reads."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from handoff_worker.cli import main

ROOT = Path(__file__).resolve().parents[2]


def run(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, args, env=env)
    return result.exit_code, result.stdout, result.stderr


def test_shipped_file_passes() -> None:
    code, out, _ = run(["config", "check", "--file", str(ROOT / "config/nurture.yaml")])
    assert code == 0
    assert out.strip().endswith("valid (9 reasons, 8 nurtures)")


def test_default_file_comes_from_handoff_config(tmp_path: Path) -> None:
    path = tmp_path / "team.yaml"
    path.write_text("version: 1\nreasons:\n  Pricing:\n    recycle: false\n")
    code, out, _ = run(["config", "check"], env={"HANDOFF_CONFIG": str(path)})
    assert (code, out) == (0, f"{path}: valid (1 reasons, 0 nurtures)\n")


def test_every_problem_is_listed_and_exit_code_is_1(tmp_path: Path) -> None:
    path = tmp_path / "team.yaml"
    path.write_text("version: 1\nreasons:\n  Pricing:\n    nurture:\n      - workflow: abc\n      - lst: 5\n")
    code, out, err = run(["config", "check", "--file", str(path)])
    assert code == 1
    assert out == ""
    assert err.splitlines() == [
        f"{path} has 3 problem(s):",
        f"  - {path}:5 reasons > Pricing > nurture[0] > workflow: 'abc' is not a workflow id; write the "
        "numeric id from the workflow's URL, e.g. workflow: 12345",
        f"  - {path}:6 reasons > Pricing > nurture[1] > lst: unknown key 'lst'; did you mean 'list'? "
        "Allowed here: workflow, list, property, name",
        f"  - {path}:6 reasons > Pricing > nurture[1]: this nurture names no method; give exactly one of "
        "workflow: <id>, list: <id> or property: {name: ..., value: ...} per entry (start another '- ' "
        "line for a second one)",
    ]


def test_missing_file_names_the_setting() -> None:
    code, _, err = run(["config", "check"], env={"HANDOFF_CONFIG": "/nowhere/nurture.yaml"})
    assert code == 1
    assert "HANDOFF_CONFIG points to /nowhere/nurture.yaml which does not exist" in err


def test_missing_file_given_with_option_names_the_option(tmp_path: Path) -> None:
    code, _, err = run(["config", "check", "--file", str(tmp_path / "x.yaml")])
    assert code == 1
    assert f"--file points to {tmp_path / 'x.yaml'} which does not exist" in err


def test_bad_setting_is_reported_not_a_traceback() -> None:
    code, _, err = run(["config", "check"], env={"HUBSPOT_BASE_URL": "ftp://nope"})
    assert code == 1
    assert "HUBSPOT_BASE_URL='ftp://nope' is not a http/https URL" in err
