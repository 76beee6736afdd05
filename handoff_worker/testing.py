"""Helpers the test suite and the benchmarks/drills share: waiting, processes, counting windows.

The sandbox's own test tooling (a server and its control client) is in sandbox/testing.py.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterable
from pathlib import Path


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
