"""Helpers the test suite and the benchmarks/drills share: waiting, processes, counting windows.

The sandbox's own test tooling (a server and its control client) is in sandbox/testing.py.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

# The contact property the tests' property nurtures write, as the sandbox is seeded with it.
NURTURE_TRACK = {
    "name": "nurture_track",
    "label": "Nurture track",
    "type": "string",
    "fieldType": "text",
    "groupName": "contactinformation",
    "options": [],
}


def wait_until(
    condition: Callable[[], object], *, timeout: float = 30.0, what: str = "the condition", every: float = 0.1
) -> None:
    """Poll `condition` until it is true; TimeoutError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:g} s for {what}")
        time.sleep(every)


def free_port() -> int:
    """A local port nothing listens on now (bound, then released) for a server to start on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# The checkout this package runs from: `python -m handoff_worker` in a child process imports it from here.
SOURCE_ROOT = Path(__file__).resolve().parents[1]


def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """`handoff-worker ARGS` as its own process, with `env` as its only REDIS_/HUBSPOT_/HANDOFF_
    settings (none inherited from the caller's environment), in `cwd` (where it looks for `.env`)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "HUBSPOT_", "HANDOFF_"))}
    base["PYTHONPATH"] = str(SOURCE_ROOT)
    return subprocess.run(
        [sys.executable, "-m", "handoff_worker", *args],
        env={**base, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def start_probe_app(
    app_module: str, directory: Path, log_path: Path, env: Mapping[str, str], *pool: str
) -> subprocess.Popen[bytes]:
    """`celery -A app_module worker` on the handoff queue for a probe app kept in `directory`,
    returned once it says it is ready; `pool` are its pool options, `env` adds to its environment."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("celery")),
                *("-A", app_module, "worker", *pool, "--queues=handoff"),
                *("--without-heartbeat", "--without-gossip", "--without-mingle", "--loglevel=INFO"),
            ],
            cwd=directory,
            env={**os.environ, "PYTHONPATH": str(directory), **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    wait_until(lambda: b"ready." in log_path.read_bytes(), timeout=30, what="the probe worker to start")
    return process


def stop_process(process: subprocess.Popen[bytes], timeout: float) -> None:
    """Ask `process` to stop (SIGTERM); kill it should it still run after `timeout` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def children_of(pid: int) -> list[int]:
    """Process ids whose parent is `pid`, read from /proc (Linux)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # the process ended while we looked
        # The command name may hold spaces: the parent pid is the second field after its ")".
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def busiest_window(moments_ms: Iterable[float], window_ms: float) -> int:
    """The most moments found in any sliding window of `window_ms` (half-open: [t, t + window))."""
    ordered = sorted(moments_ms)
    best, start = 0, 0
    for end, moment in enumerate(ordered):
        while moment - ordered[start] >= window_ms:
            start += 1
        best = max(best, end - start + 1)
    return best


def own_lines(output: str) -> list[str]:
    """The output's lines, less Celery's and gunicorn's warning about running as root (tests may)."""
    root_warning = (
        "SecurityWarning",
        "absolutely not recommended",
        "--uid option",
        "User information",
        "_warn_or_raise",
    )
    return [line for line in output.splitlines() if line.strip() and not any(w in line for w in root_warning)]
