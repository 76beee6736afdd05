"""What people see when an ops command cannot do its job: one line on stderr that names the setting
(its value masked) and what to do, a non-zero exit, no traceback unless --debug. Real processes
against a real Redis, a closed port and a port that never answers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from handoff_worker.cli import COMMANDS, SELF_CONTAINED
from handoff_worker.testing import free_port, run_cli

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "Sw0rdf1sh-do-not-print"


# (arguments, the command as the error line names it)
OPS_COMMANDS = [
    (["failures"], "failures"),
    (["failures", "--json"], "failures"),
    (["replay", "--all"], "replay"),
    (["report", "--since", "7d"], "report"),
    (["resync", "--since", "1h"], "resync"),
    (["resync", "--deal", "1", "--inline"], "resync"),
    (["config", "check", "--remote"], "config check"),
    (["config", "setup-properties"], "config setup-properties"),
    (["journey", "3001"], "journey"),
    (["rehearse", "--procfile", str(ROOT / "Procfile")], "rehearse"),
    (["status"], "status"),
]
# Commands that never read REDIS_URL (settings only shows it: see the malformed-URL test).
NO_REDIS = {*SELF_CONTAINED, "settings"}


def settings_env(redis_url: str) -> dict[str, str]:
    return {
        "REDIS_URL": redis_url,
        "HUBSPOT_ACCESS_TOKEN": "pat-test-token",
        "HUBSPOT_BASE_URL": f"http://127.0.0.1:{free_port()}",
        "HANDOFF_CONFIG": str(ROOT / "config/nurture.yaml"),
    }


def assert_one_line_for_people(result: subprocess.CompletedProcess[str], *must_name: str) -> str:
    assert result.returncode != 0, result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert PASSWORD not in result.stderr + result.stdout
    for word in must_name:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(("args", "command"), OPS_COMMANDS, ids=[" ".join(a) for a, _ in OPS_COMMANDS])
def test_redis_down_is_one_line_naming_redis_url(args: list[str], command: str, tmp_path: Path) -> None:
    down = f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0"
    result = run_cli(args, settings_env(down), tmp_path)
    line = assert_one_line_for_people(result, "REDIS_URL", "Start Redis", "redis://***@127.0.0.1")
    assert line.startswith(f"handoff-worker {command}: cannot reach Redis at")


def test_every_command_that_uses_redis_is_checked_with_redis_down() -> None:
    assert {args[0] for args, _ in OPS_COMMANDS} == set(COMMANDS) - NO_REDIS


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers: a Redis behind a dead network path."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield int(listener.getsockname()[1])


def test_redis_that_never_answers_is_one_line(silent_port: int, tmp_path: Path) -> None:
    result = run_cli(["failures"], settings_env(f"redis://:{PASSWORD}@127.0.0.1:{silent_port}/0"), tmp_path)
    assert_one_line_for_people(result, "REDIS_URL", f"redis://***@127.0.0.1:{silent_port}/0")


def test_wrong_redis_credentials_are_one_line(redis_url: str, tmp_path: Path) -> None:
    parts = urlsplit(redis_url)
    wrong = f"redis://nobody:{PASSWORD}@{parts.hostname}:{parts.port or 6379}{parts.path}"
    result = run_cli(["failures"], settings_env(wrong), tmp_path)
    assert_one_line_for_people(result, "refused the credentials", "REDIS_URL", "redis://***@")


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    down = f"redis://127.0.0.1:{free_port()}/0"
    result = run_cli(["--debug", "failures"], settings_env(down), tmp_path)
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "redis.exceptions.ConnectionError" in result.stderr


@pytest.mark.parametrize(
    "malformed",
    [
        f"redis//:{PASSWORD}@localhost:6379/0",  # scheme typo
        f"redis:/:{PASSWORD}@localhost:6379/0",
        f"redis://:{PASSWORD[:6]}/{PASSWORD[7:]}@localhost:6379/0",  # unencoded / in the password
        f"redis://:{PASSWORD}@localhost:port/0",
        f"redis://:{PASSWORD}@localhost:6379/zero",
        f"redis://:{PASSWORD}@[::1:6379/0",
        f"redis://u:12/{PASSWORD}@localhost/0",
    ],
)
@pytest.mark.parametrize("args", [["settings"], ["failures"], ["resync", "--since", "1h"]], ids=" ".join)
def test_malformed_redis_url_is_named_without_its_password(
    malformed: str, args: list[str], tmp_path: Path
) -> None:
    result = run_cli(args, settings_env(malformed), tmp_path)
    assert_one_line_for_people(result, "REDIS_URL=", "***")
    assert PASSWORD[:6] not in result.stderr and PASSWORD[7:] not in result.stderr


def test_a_missing_extra_is_named_with_the_install_command(tmp_path: Path) -> None:
    """A production install has no demo extra: `demo` says how to get it instead of a traceback."""
    hide_fakeredis = (
        "import sys; sys.modules['fakeredis'] = None; from handoff_worker.cli import main; main()"
    )
    result = subprocess.run(
        [sys.executable, "-c", hide_fakeredis, "demo"],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert_one_line_for_people(result, "fakeredis", "pip install 'handoff-worker[demo]'")


# --------------------------------------------------------------------------- which Redis, which .env


def test_without_env_file_or_redis_url_the_command_says_it_uses_the_default(tmp_path: Path) -> None:
    env = settings_env("unused")
    del env["REDIS_URL"]
    result = run_cli(["config", "check"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    first = result.stderr.splitlines()[0]
    assert "redis://localhost:6379/0" in first
    assert f"REDIS_URL is not set and there is no .env in {tmp_path}" in first


def test_the_command_names_the_env_file_that_chose_redis(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"REDIS_URL=redis://:{PASSWORD}@127.0.0.1:{free_port()}/3\n")
    env = settings_env("unused")
    del env["REDIS_URL"]
    result = run_cli(["failures"], env, tmp_path)
    lines = result.stderr.splitlines()
    assert result.returncode != 0 and len(lines) == 2, result.stderr
    assert lines[0].startswith("using Redis at redis://***@127.0.0.1") and str(tmp_path / ".env") in lines[0]
    assert f"REDIS_URL from {tmp_path / '.env'}" in lines[1] and "Start Redis" in lines[1]
    assert PASSWORD not in result.stderr


def test_redis_url_in_the_environment_needs_no_note(redis_url: str, tmp_path: Path) -> None:
    result = run_cli(["failures"], settings_env(redis_url), tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "no failed handoff is waiting" in result.stdout
