"""Which window a sweep covers: given on the command line, or from the last good sweep's watermark.

The scheduled sweep starts from the last successful sweep's watermark minus a lookback (search lags
writes by seconds); the watermark moves only when a sweep finished without failures.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import redis

from handoff_worker.handoff.resync.errors import ResyncError
from handoff_worker.state import KEY_PREFIX

WATERMARK_KEY = f"{KEY_PREFIX}resync:watermark"
# Without a watermark (first sweep ever) the scheduled sweep looks back this far.
FIRST_SWEEP_LOOKBACK = timedelta(days=1)

_RELATIVE_RE = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_moment(text: str, *, now: datetime, option: str = "--since") -> datetime:
    """`24h`, `90d`, `30m`, `2w` (that long before `now`), or an ISO date/time (UTC if no zone)."""
    relative = _RELATIVE_RE.match(text)
    if relative:
        amount, unit = relative.groups()
        return now - timedelta(**{_UNITS[unit]: int(amount)})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ResyncError(
            f"{option} {text!r} is neither a duration nor a date: write e.g. {option} 24h, "
            f"{option} 90d or {option} 2026-11-01 (ISO dates and times, UTC unless a zone is given)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def read_watermark(client: redis.Redis) -> datetime | None:
    raw = client.get(WATERMARK_KEY)
    return datetime.fromisoformat(str(raw)) if raw else None


def write_watermark(client: redis.Redis, moment: datetime) -> None:
    client.set(WATERMARK_KEY, moment.astimezone(UTC).isoformat())


def scheduled_window(
    client: redis.Redis, *, now: datetime, lookback_minutes: int
) -> tuple[datetime, datetime]:
    """[watermark - lookback, now]; the first sweep ever looks back one day."""
    watermark = read_watermark(client)
    start = (watermark or now - FIRST_SWEEP_LOOKBACK) - timedelta(minutes=lookback_minutes)
    return start, now
