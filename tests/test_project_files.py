"""The files an operator reads first stay true to the code."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from handoff_worker.cli import COMMANDS, main

ROOT = Path(__file__).resolve().parents[1]


def test_env_example_lists_every_setting_the_code_reads() -> None:
    read = set(re.findall(r'"([A-Z][A-Z0-9_]+)"', (ROOT / "handoff_worker/settings.py").read_text()))
    read &= {
        n
        for n in read
        if n.startswith(("HUBSPOT_", "REDIS_", "HANDOFF_", "WEBHOOK_", "TRUSTED_", "RESYNC_", "LOG_"))
    }
    listed = set(re.findall(r"^([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    assert read, "no setting names found in settings.py"
    assert read - listed == set(), "settings missing from .env.example"
    assert listed - read == set(), ".env.example lists settings the code does not read"


def test_procfile_runs_the_documented_processes() -> None:
    processes = dict(
        line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line.strip()
    )
    assert {"web", "worker", "beat"} <= processes.keys()
    assert "handoff_worker.wsgi:app" in processes["web"]
    assert "--max-tasks-per-child" in processes["worker"]


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci/run").read_text()
    assert "python3 dev.py test" in readme
    assert re.search(r"^python3 dev.py test$", ci, re.M)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_subcommand_explains_itself(name: str) -> None:
    result = CliRunner().invoke(main, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    assert len(result.output.splitlines()) > 3


def test_top_level_help_lists_every_subcommand() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "handoff_worker", "--help"], capture_output=True, text=True, check=True
    )
    for name in COMMANDS:
        assert name in result.stdout
