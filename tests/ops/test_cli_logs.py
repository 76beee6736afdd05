"""A command's log lines for a log collector: `--json-logs` (or LOG_FORMAT=json) writes the fields
the services write, from LOG_LEVEL; without it a command shows only what stops it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ops_support import OpsEnv, seed_lost_deal

LOG_FIELDS = {"time", "level", "logger", "message", "process", "pid"}


def run(env: OpsEnv, *args: str, tmp_path: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "handoff_worker", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PATH": os.environ.get("PATH", ""), **env.env(), **extra},
        timeout=120,
        check=False,
    )


def test_json_logs_carry_the_services_fields(ops: OpsEnv, tmp_path: Path) -> None:
    seed_lost_deal(ops, "8601", "Pricing", {"8701": "opportunity"})
    result = run(
        ops, "--json-logs", "resync", "--deal", "8601", "--inline", tmp_path=tmp_path, LOG_LEVEL="INFO"
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert lines, result.stderr
    assert all(line.keys() >= LOG_FIELDS and line["process"] == "cli" for line in lines)
    assert any(line["logger"] == "handoff_worker.audit" for line in lines)  # the run's audit line


def test_log_format_json_does_the_same_and_log_level_filters(ops: OpsEnv, tmp_path: Path) -> None:
    seed_lost_deal(ops, "8602", "Pricing", {"8702": "opportunity"})
    result = run(
        ops, "resync", "--deal", "8602", "--inline", tmp_path=tmp_path, LOG_FORMAT="json", LOG_LEVEL="ERROR"
    )
    assert result.returncode == 0, result.stderr
    assert not [line for line in result.stderr.splitlines() if line.startswith("{")]
    plain = run(ops, "resync", "--deal", "8602", "--inline", tmp_path=tmp_path, LOG_LEVEL="INFO")
    assert not [line for line in plain.stderr.splitlines() if line.startswith("{")]
