"""`handoff-worker rehearse` as a user runs it: the Procfile's processes and a sandbox, over real wires."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from handoff_worker.sandbox.testing import SandboxControl
from handoff_worker.testing import children_of, free_port, wait_until

ROOT = Path(__file__).resolve().parents[1]


def test_rehearse_hands_off_a_deal_lost_in_the_sandbox_and_stops_cleanly(
    redis_url: str, tmp_path: Path
) -> None:
    web_port, sandbox_port = free_port(), free_port()
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "OPS_BIND": "",
        "WEB_CONCURRENCY": "1",
        "WORKER_CONCURRENCY": "1",
        "BULK_WORKER_CONCURRENCY": "1",
        "CELERY_BEAT_SCHEDULE": str(tmp_path / "beat-schedule"),
    }
    log = (tmp_path / "rehearse.log").open("w+b")
    rehearse = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "handoff_worker",
            "rehearse",
            "--port",
            str(web_port),
            "--sandbox-port",
            str(sandbox_port),
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def output() -> str:
        return (tmp_path / "rehearse.log").read_text(errors="replace")

    try:
        wait_until(lambda: "worker@" in output() and " ready." in output(), timeout=60, what="the worker")
        wait_until(lambda: f"Listening at: http://0.0.0.0:{web_port}" in output(), timeout=60, what="web")
        control = SandboxControl(f"http://127.0.0.1:{sandbox_port}")
        control.lose_deal("2001", "Pricing")

        def recycled() -> bool:
            contacts = {c["id"]: c["properties"] for c in control.objects("contacts")}
            return all(contacts[i].get("lifecyclestage") == "lead" for i in ("3001", "3002"))

        wait_until(recycled, timeout=60, what=f"deal 2001's contacts recycled; output:\n{output()}")
        assert "handoff_recycled_at" in output()  # the markers were checked or created first
        procfile = [line for line in (ROOT / "Procfile").read_text().splitlines() if line.strip()]
        assert len(children_of(rehearse.pid)) == len(procfile), output()  # one per Procfile line
        processes = _descendants(rehearse.pid)
    finally:
        rehearse.send_signal(signal.SIGINT)
        code = rehearse.wait(timeout=60)
    assert code == 0, output()
    leftovers = [pid for pid in processes if Path(f"/proc/{pid}").exists()]
    assert leftovers == [], f"still running after the rehearsal stopped: {leftovers}"
    assert "rehearse  stopping" in output()


def _descendants(pid: int) -> list[int]:
    found = children_of(pid)
    for child in list(found):
        found += _descendants(child)
    return found


def test_the_readme_and_the_sandbox_docs_give_the_rehearsal_s_own_values() -> None:
    from click.testing import CliRunner

    from handoff_worker import rehearse
    from handoff_worker.sandbox.commands import sandbox_command

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Rehearsing against the sandbox") :].split("\n## ", 1)[0]
    sandbox_doc = (ROOT / "docs/sandbox.md").read_text()
    sandbox_help = CliRunner().invoke(sandbox_command, ["--help"], terminal_width=200).output
    sandbox_help = " ".join(sandbox_help.split())
    webhook_url = f"http://127.0.0.1:{rehearse.DEFAULT_WEB_PORT}/webhooks/hubspot"
    for text in (section, sandbox_doc):
        assert f"--port {rehearse.DEFAULT_SANDBOX_PORT} --webhook-url {webhook_url}" in text
        assert str(rehearse.REHEARSAL_APP_ID) in text and rehearse.REHEARSAL_CLIENT_SECRET in text
    assert f"`http://127.0.0.1:{rehearse.DEFAULT_SANDBOX_PORT}`" in section
    assert f"[default: {rehearse.DEFAULT_SANDBOX_PORT}]" in sandbox_help
    assert f"[default: {rehearse.REHEARSAL_APP_ID}]" in sandbox_help
    assert f"default: {rehearse.REHEARSAL_CLIENT_SECRET}" in sandbox_help
