"""Log lines of every process, one format: JSON objects with the same fields, or plain text.

Every line carries `time`, `level`, `logger`, `message`, `process` (web, worker, sweeper, beat,
cli) and `pid`; a line written inside a Celery task adds `task` and `task_id`; anything a caller
passes in `extra` (counts, statuses, outcomes, ids; the `fields` dict of the intake) is added as
fields. Callers never pass property values, emails, names, secrets or signatures.

This module imports nothing of ours: every process configures its logging with it before it does
anything else.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import TextIO

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("json", "text")

# What every LogRecord has: the rest of its attributes came from `extra`.
_STANDARD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "fields"}

_role = "cli"


def set_process_role(role: str) -> None:
    """Name this process in every line it logs (web, worker, sweeper, beat, cli)."""
    global _role
    _role = role


def process_role() -> str:
    return _role


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": _role,
            "pid": record.process or os.getpid(),
        }
        for name, value in record.__dict__.items():
            if name not in _STANDARD_ATTRIBUTES and not name.startswith("_"):
                line.setdefault(name, value)
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    """For a person at a terminal: the same facts, on one readable line."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s [%(process_role)s] %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        record.process_role = _role
        text = super().format(record)
        task_id = getattr(record, "task_id", None)
        return f"{text} (task {task_id})" if task_id else text


def formatter_for(log_format: str) -> logging.Formatter:
    return TextFormatter() if log_format == "text" else JsonFormatter()


def configure_logging(level: str, log_format: str = "json", *, role: str | None = None) -> None:
    """Send every logger's lines to stderr in `log_format` from `level` up. Called again, it replaces
    the handler it added before, so each line is written once, in one format."""
    if role is not None:
        set_process_role(role)
    handler = _OurHandler(sys.stderr)
    handler.setFormatter(formatter_for(log_format))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _OurHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


class _OurHandler(logging.StreamHandler[TextIO]):
    """The handler `configure_logging` adds, told apart from a library's or a test's."""


def dict_config(level: str, log_format: str, *, loggers: tuple[str, ...]) -> dict[str, object]:
    """A `logging.config.dictConfig` for servers that configure their own loggers (gunicorn's
    `logconfig_dict`): their lines in the same format as ours."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"ours": {"()": f"{__name__}.{formatter_for(log_format).__class__.__name__}"}},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "ours", "stream": "ext://sys.stderr"}
        },
        "loggers": {name: {"handlers": ["stderr"], "level": level, "propagate": False} for name in loggers},
        # The root logger's handler is the app's own (`configure_logging`, in each worker process).
        "root": {"level": level, "handlers": []},
    }
