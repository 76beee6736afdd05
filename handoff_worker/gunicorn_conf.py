"""gunicorn settings for the web process (the Procfile's `web:` line).

WEB_CONCURRENCY worker processes (default 2: one per core, the handler is mostly CPU; a third
worker measured no faster on 2 cores), each with WEB_THREADS threads (default 8) so a
request waiting on Redis does not hold up the others; bound to PORT (default 8000). HubSpot
gives up after 5 s, so a request running for 30 s is stuck and its worker is replaced.

With several workers, set PROMETHEUS_MULTIPROC_DIR to an empty writable directory so /metrics
adds up every worker's numbers; `child_exit` below tidies a dead worker's files.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from handoff_worker.settings import get_settings

if "gunicorn" in sys.argv[0]:
    # While gunicorn reads this file: before it binds, logs or boots a worker, a missing setting or
    # unreadable rules end start-up with one line (handoff_worker.startup).
    from handoff_worker.startup import check_web

    check_web()

bind = [f"0.0.0.0:{os.environ.get('PORT', '8000')}"]
# /readyz and /metrics are answered only on this internal listener (see the README).
_ops_bind = get_settings().ops_bind
if _ops_bind:
    if _ops_bind.rsplit(":", 1)[1] == os.environ.get("PORT", "8000"):
        raise SystemExit(
            f"OPS_BIND={_ops_bind} uses the public PORT: give the internal listener its own port"
        )
    bind.append(_ops_bind)
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", "8"))
timeout = 30
graceful_timeout = 20
keepalive = 5
# Requests are small; this bounds a slow client holding a thread.
limit_request_line = 8190
accesslog = None  # the app writes one JSON line per request itself


def child_exit(server: Any, worker: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
