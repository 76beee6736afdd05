"""JSON log lines of the web process: the formatter every process shares (`handoff_worker.logs`).

Only fields passed in `extra` (or under the key `fields`) are added; callers put counts, statuses
and outcomes there, never property values, emails, names, secrets or signatures.
"""

from __future__ import annotations

from handoff_worker.logs import JsonFormatter, configure_logging


def configure_json_logging(level: str = "INFO", log_format: str = "json") -> None:
    """Send the root logger's output to stderr (JSON unless LOG_FORMAT=text). Idempotent."""
    configure_logging(level, log_format, role="web")


__all__ = ["JsonFormatter", "configure_json_logging"]
