"""Rate limits HubSpot enforces per account, and faults the sandbox injects on purpose."""

from __future__ import annotations

import random
import re
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any


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


@dataclass
class FailNext:
    """Deterministic faults: the next `count` requests under `path_prefix` answer `status`."""

    count: int
    status: int
    path_prefix: str = "/"
    method: str | None = None


@dataclass
class FaultSettings:
    rate_limit_share: float = 0.0  # share of requests answered 429 TEN_SECONDLY_ROLLING
    server_error_share: float = 0.0  # share answered 502 or 503
    latency_ms: int = 0
    unreachable: bool = False  # close the connection without answering
    retry_after_s: int | None = None  # a Retry-After header on injected 429s
    path_prefixes: list[str] = field(default_factory=list)  # empty: every API path
    fail_next: list[FailNext] = field(default_factory=list)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> FaultSettings:
        known = {k: v for k, v in raw.items() if k in cls.__dataclass_fields__ and k != "fail_next"}
        settings = cls(**known)
        settings.fail_next = [FailNext(**item) for item in raw.get("fail_next", [])]
        return settings


class Faults:
    """Decides, per request, whether to misbehave. Seeded random so drills can be replayed."""

    def __init__(self, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self.settings = FaultSettings()

    def set(self, settings: FaultSettings) -> None:
        with self._lock:
            self.settings = settings

    def clear(self) -> None:
        self.set(FaultSettings())

    def describe(self) -> dict[str, Any]:
        with self._lock:
            return asdict(self.settings)

    def _applies(self, path: str) -> bool:
        prefixes = self.settings.path_prefixes
        return not prefixes or any(path.startswith(p) for p in prefixes)

    def unreachable(self, path: str) -> bool:
        with self._lock:
            return self.settings.unreachable and self._applies(path)

    def latency_s(self, path: str) -> float:
        with self._lock:
            return self.settings.latency_ms / 1000 if self._applies(path) else 0.0

    def injected_status(self, method: str, path: str) -> int | None:
        """The status to answer instead of the real one, or None to behave."""
        with self._lock:
            for rule in self.settings.fail_next:
                if rule.count > 0 and path.startswith(rule.path_prefix) and rule.method in (None, method):
                    rule.count -= 1
                    return rule.status
            if not self._applies(path):
                return None
            roll = self._random.random()
            if roll < self.settings.rate_limit_share:
                return 429
            if roll < self.settings.rate_limit_share + self.settings.server_error_share:
                return self._random.choice((502, 503))
            return None
