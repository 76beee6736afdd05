"""The web process builds its rules store without loading any of the handoff code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

LOADED_BY_WSGI = """
import json, sys
import handoff_worker.wsgi
print(json.dumps(sorted(name for name in sys.modules if name.startswith("handoff_worker"))))
"""


def test_importing_the_web_entry_point_loads_no_handoff_or_hubspot_module(redis_url: str) -> None:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "REDIS_URL": redis_url,
        "HANDOFF_CONFIG": str(ROOT / "config" / "nurture.yaml"),
        "HUBSPOT_CLIENT_SECRET": "web-process-import-test-secret",
        "HUBSPOT_ACCESS_TOKEN": "web-process-import-test-token",
        "WEBHOOK_PUBLIC_URL": "https://handoff.example.com/webhooks/hubspot",
    }
    # A fresh interpreter: in this one the other tests have imported everything already.
    result = subprocess.run(
        [sys.executable, "-c", LOADED_BY_WSGI], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert "handoff_worker.intake.app" in loaded and "handoff_worker.nurture_config.store" in loaded
    forbidden = [
        name
        for name in loaded
        if name.startswith(("handoff_worker.handoff", "handoff_worker.hubspot"))
        or name == "handoff_worker.wiring"
    ]
    assert forbidden == []
