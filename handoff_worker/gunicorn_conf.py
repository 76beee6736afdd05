"""gunicorn settings for the web process (the Procfile's `web:` line).

WEB_CONCURRENCY worker processes (default 2: one per core; the handler is mostly CPU, a few
milliseconds per 100-event request, and a third process measured no faster on 2 cores), bound to
PORT (default 8000). Each process is gevent-based (`handoff_worker.web_worker`): a connection
costs a greenlet rather than a thread, so clients that send slowly wait in the event loop
without holding up anyone else, up to WEB_CONNECTIONS open connections per process (default
1000). Each request must arrive whole, headers and body, within WEB_READ_TIMEOUT seconds
(default 5) of the server starting to wait for it; a late body is answered 408 and its
connection closed. docs/performance.md and docs/reliability.md have the measurements.

HubSpot gives up after 5 s, so a worker that has not reported to gunicorn for 30 s is stuck and is
replaced. Run a reverse proxy in front all the same (TLS, connection limits per client).

The workers share one metrics directory (PROMETHEUS_MULTIPROC_DIR, or one of their own made at
start) so /metrics adds up every worker's numbers; `child_exit` below tidies a dead worker's files.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from handoff_worker.errors import SettingsError
from handoff_worker.logs import dict_config, set_process_role
from handoff_worker.settings import get_settings
from handoff_worker.web_worker import read_timeout_from, whole_number_from

if "gunicorn" in sys.argv[0]:
    # While gunicorn reads this file: before it binds, logs or boots a worker, a missing setting or
    # unreadable rules end start-up with one line (handoff_worker.startup).
    from handoff_worker.startup import check_web

    check_web()

# Checked here, in the master, so a bad value stops start-up with one line naming it.
try:
    read_timeout_from(os.environ)
    port = whole_number_from(os.environ, "PORT", 8000)
    workers = whole_number_from(os.environ, "WEB_CONCURRENCY", 2)
    worker_connections = whole_number_from(os.environ, "WEB_CONNECTIONS", 1000)
except SettingsError as problem:
    sys.exit(f"handoff-worker web: {problem}")

bind = [f"0.0.0.0:{port}"]
# /readyz and /metrics are answered only on this internal listener (see the README).
_ops_bind = get_settings().ops_bind
if _ops_bind:
    if _ops_bind.rsplit(":", 1)[1] == str(port):
        raise SystemExit(
            f"OPS_BIND={_ops_bind} uses the public PORT: give the internal listener its own port"
        )
    bind.append(_ops_bind)
worker_class = "handoff_worker.web_worker.DeadlineGeventWorker"
timeout = 30
graceful_timeout = 20
# Also the idle limit of a kept-alive connection. Keep it above 0: with 0 gunicorn reads headers
# with no deadline at all.
keepalive = 5
limit_request_line = 8190
# Forwarded headers are trusted by the app alone, and only when TRUSTED_PROXY_COUNT says how many
# proxies set them (werkzeug's ProxyFix). gunicorn itself would otherwise believe
# X-Forwarded-Proto from any local client, and the signature check would hash the URL it claims.
forwarded_allow_ips = ""
secure_scheme_headers: dict[str, str] = {}
# gunicorn's control socket defaults to one path per user: a second gunicorn on the host (another
# app, a test run) would replace this one's. Nothing here uses it.
control_socket_disable = True
accesslog = None  # the app writes one JSON line per request itself
# gunicorn's own lines (start, worker boots and exits) in the format of the app's, at LOG_LEVEL.
_log_settings = get_settings()  # check_web above said what is wrong with them, if anything
set_process_role("web")
logconfig_dict = dict_config(
    _log_settings.log_level, _log_settings.log_format or "json", loggers=("gunicorn.error",)
)


def on_starting(server: Any) -> None:
    # Before the first worker forks (and imports the app): the workers' shared, empty metrics
    # directory, so /metrics adds up every worker's counts (docs/operations.md, "Metrics").
    from handoff_worker.metrics_dir import use_multiprocess_dir

    use_multiprocess_dir("web")


def child_exit(server: Any, worker: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from handoff_worker.metrics import mark_process_dead

        mark_process_dead(worker.pid)
