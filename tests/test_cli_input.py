"""Input a person gets wrong on the command line or in `.env`: refused before any work, in one line
that says what was wrong and what to write. Real processes, a real Redis and the sandbox."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from handoff_worker.sandbox.testing import SandboxServer
from handoff_worker.testing import run_cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def cli_env(sandbox: SandboxServer, redis_url: str) -> dict[str, str]:
    return {
        "REDIS_URL": redis_url,
        "HUBSPOT_ACCESS_TOKEN": "pat-test-token",
        "HUBSPOT_BASE_URL": sandbox.url,
        "HANDOFF_CONFIG": str(ROOT / "config/nurture.yaml"),
    }


def one_error_line(result: subprocess.CompletedProcess[str], *must_name: str) -> str:
    assert result.returncode != 0, result.stdout
    # Besides the usage lines click prints with a usage error, and the note on where Redis comes from.
    errors = [
        line
        for line in result.stderr.splitlines()
        if line.strip() and not line.startswith(("using Redis at", "Usage:", "Try '"))
    ]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for word in must_name:
        assert word in errors[0], result.stderr
    return errors[0]


def test_resync_refuses_a_deal_id_that_is_not_a_number(cli_env: dict[str, str], tmp_path: Path) -> None:
    result = run_cli(["resync", "--deal", "abc"], cli_env, tmp_path)
    assert result.returncode == 2
    one_error_line(result, "--deal", "'abc'", "e.g. --deal 123")
    assert "found" not in result.stdout


def test_resync_refuses_a_window_that_ends_before_it_starts(cli_env: dict[str, str], tmp_path: Path) -> None:
    result = run_cli(["resync", "--since", "2026-11-10", "--until", "2026-11-01"], cli_env, tmp_path)
    assert result.returncode == 2
    one_error_line(result, "--since must be earlier than --until")


def test_resync_of_named_deals_inline_says_what_it_did(
    sandbox: SandboxServer, cli_env: dict[str, str], tmp_path: Path
) -> None:
    sandbox.control.lose_deal("2001", "Pricing")
    result = run_cli(["resync", "--deal", "2001", "--inline"], cli_env, tmp_path)
    assert result.returncode == 0, result.stderr
    rows = {line[:28].strip(): line[28:].strip() for line in result.stdout.splitlines()[1:]}
    assert rows["deals named"] == "1" and "lost deals" not in rows
    assert rows["handed off here"] == "1" and "queued" not in rows


def test_report_checks_its_output_path_before_reading_anything(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-folder" / "report.html"
    result = run_cli(["report", "--format", "html", "-o", str(missing)], cli_env, tmp_path)
    assert result.returncode == 2
    one_error_line(result, "--output", "does not exist")
    result = run_cli(["report", "-o", str(tmp_path)], cli_env, tmp_path)
    assert result.returncode == 2
    one_error_line(result, "--output", "is a directory")


def test_settings_shows_variables_and_has_json(cli_env: dict[str, str], tmp_path: Path) -> None:
    result = run_cli(["settings"], cli_env, tmp_path)
    assert result.returncode == 0, result.stderr
    names = [line.split()[0] for line in result.stdout.splitlines()]
    assert "HUBSPOT_CLIENT_SECRET" in names and "HANDOFF_DRY_RUN" in names and "REDIS_URL" in names
    assert not any(name.islower() for name in names), names
    as_json = json.loads(run_cli(["settings", "--json"], cli_env, tmp_path).stdout)
    assert (
        as_json["HUBSPOT_ACCESS_TOKEN"] == "(set)"
        and as_json["HUBSPOT_BASE_URL"] == cli_env["HUBSPOT_BASE_URL"]
    )
    listed = (ROOT / ".env.example").read_text()
    for name in as_json:
        assert f"\n{name}=" in listed, f"{name} is shown by `settings` but not in .env.example"


def test_settings_refuses_the_placeholder_token_from_env_example(tmp_path: Path) -> None:
    # .env.example copied to .env as is, the first thing a new user does.
    (tmp_path / ".env").write_text((ROOT / ".env.example").read_text())
    result = run_cli(["settings"], {}, tmp_path)
    one_error_line(result, "HUBSPOT_ACCESS_TOKEN", "placeholder from .env.example")


def test_a_dotenv_line_that_is_not_name_equals_value_is_named(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("HUBSPOT_APP_ID=1\nREDIS_URL: redis://:secret@10.0.0.9:6379/2\n")
    result = run_cli(["failures"], {}, tmp_path)
    line = one_error_line(result, f"{tmp_path / '.env'}, line 2", "NAME=value")
    assert "secret" not in result.stderr + result.stdout, line
