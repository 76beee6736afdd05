"""Rate limits HubSpot enforces per account (faults injected on purpose are in faults.py)."""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from dataclasses import dataclass


def parse_rate(text: str) -> tuple[int, float]:
    """'100/10s' -> (100, 10.0). Also accepts 'ms' and a bare number of seconds."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)\s*(ms|s)?\s*", text)
    if not match:
        raise ValueError(f"rate limit {text!r} is not like '100/10s' (requests / window)")
    count, window, unit = int(match[1]), float(match[2]), match[3] or "s"
    return count, window / 1000 if unit == "ms" else window


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    policy: str  # TEN_SECONDLY_ROLLING | DAILY | SECONDLY
    headers: dict[str, str]


class RollingLimiter:
    """A rolling-window counter: the last `window` seconds may hold at most `limit` requests."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit, self.window_s = limit, window_s
        self._hits: deque[float] = deque()

    def take(self, now: float) -> tuple[bool, int]:
        while self._hits and self._hits[0] <= now - self.window_s:
            self._hits.popleft()
        if len(self._hits) >= self.limit:
            return False, 0
        self._hits.append(now)
        return True, self.limit - len(self._hits)


class AccountLimits:
    """The burst, daily and search limits of one account, shared by every client."""

    def __init__(self, rate_limit: str = "100/10s", daily_limit: int = 500_000, search_per_second: int = 5):
        self._lock = threading.Lock()
        self.configure(rate_limit, daily_limit, search_per_second)

    def configure(self, rate_limit: str, daily_limit: int, search_per_second: int) -> None:
        count, window = parse_rate(rate_limit)
        with self._lock:
            self.rate_limit = rate_limit
            self.burst = RollingLimiter(count, window)
            self.search = RollingLimiter(search_per_second, 1.0)
            self.daily_limit = daily_limit
            self.daily_used = 0

    def check(self, is_search: bool) -> Verdict:
        now = time.monotonic()
        with self._lock:
            if is_search:
                allowed, _ = self.search.take(now)
                return Verdict(allowed, "SECONDLY", {})  # HubSpot sends no limit headers on search
            if self.daily_used >= self.daily_limit:
                return Verdict(False, "DAILY", self._headers(0))
            allowed, remaining = self.burst.take(now)
            if allowed:
                self.daily_used += 1
            return Verdict(allowed, "TEN_SECONDLY_ROLLING", self._headers(remaining))

    def _headers(self, remaining: int) -> dict[str, str]:
        return {
            "X-HubSpot-RateLimit-Max": str(self.burst.limit),
            "X-HubSpot-RateLimit-Remaining": str(remaining),
            "X-HubSpot-RateLimit-Interval-Milliseconds": str(int(self.burst.window_s * 1000)),
            "X-HubSpot-RateLimit-Daily": str(self.daily_limit),
            "X-HubSpot-RateLimit-Daily-Remaining": str(max(self.daily_limit - self.daily_used, 0)),
        }
