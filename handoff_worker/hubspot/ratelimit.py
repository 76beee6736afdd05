"""HubSpot's per-account rate limits, shared by every process and host through Redis.

HubSpot counts requests per account, so every worker process using the same REDIS_URL draws from
one budget: the burst budget (HUBSPOT_RATE_LIMIT, default 100/10s) for every call, and the search
budget (HUBSPOT_SEARCH_RATE_LIMIT, default 5/1s) as well for search calls.

Each budget is a sliding-window log (a sorted set of grant times). One Lua script checks and takes
from every budget a call needs in one atomic step, with Redis's own clock (TIME), so hosts whose
clocks disagree still agree on the windows. Windows are widened by a small safety margin because
HubSpot counts when a request *arrives*, which can be a little after we granted it.

Other integrations share the account too. Responses say how much is left
(X-HubSpot-RateLimit-Remaining); when that falls under 10 % of the maximum, `observe()` records a
pause in Redis that every process respects before its next request.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

import redis

from handoff_worker.errors import TransientHubSpotError
from handoff_worker.settings import RateLimit

log = logging.getLogger(__name__)

# KEYS: pause key, then one sorted set per budget. ARGV: a unique member, then for each budget its
# request count and window in microseconds. Returns 0 when a slot was taken in every budget, or
# the microseconds to wait before asking again (nothing is taken then).
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local paused_until = tonumber(redis.call('GET', KEYS[1]) or '0')
if paused_until > now then
  return paused_until - now
end
local wait = 0
for i = 2, #KEYS do
  local limit = tonumber(ARGV[(i - 2) * 2 + 2])
  local window = tonumber(ARGV[(i - 2) * 2 + 3])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - window)
  if redis.call('ZCARD', KEYS[i]) >= limit then
    local oldest = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
    local free_at = tonumber(oldest[2]) + window + 1
    if free_at - now > wait then
      wait = free_at - now
    end
  end
end
if wait > 0 then
  return wait
end
for i = 2, #KEYS do
  local window = tonumber(ARGV[(i - 2) * 2 + 3])
  redis.call('ZADD', KEYS[i], now, ARGV[1])
  redis.call('PEXPIRE', KEYS[i], math.ceil(window / 1000) + 1000)
end
return 0
"""

# KEYS: pause key. ARGV: pause length in microseconds. Only ever extends an existing pause.
_PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local until_us = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if until_us > current then
  redis.call('SET', KEYS[1], until_us, 'PX', math.ceil(tonumber(ARGV[1]) / 1000) + 1000)
end
return until_us
"""

LOW_REMAINING_SHARE = 0.10


def safety_margin_seconds(window_seconds: float) -> float:
    """Extra width added to each window: 5 % of it, at least 0.1 s (network and scheduling
    jitter between our grant and HubSpot's count), at most 0.5 s."""
    return min(0.5, max(0.1, window_seconds * 0.05))


@dataclass(frozen=True)
class _Budget:
    key: str
    limit: RateLimit

    def script_args(self) -> list[int]:
        widened = self.limit.window_seconds + safety_margin_seconds(self.limit.window_seconds)
        return [self.limit.requests, int(widened * 1_000_000)]


class RedisRateLimiter:
    """Blocks until a request may be sent without breaking the account's budgets."""

    def __init__(
        self,
        redis_client: redis.Redis,
        account_limit: RateLimit,
        search_limit: RateLimit,
        *,
        max_wait_seconds: float = 60.0,
        namespace: str = "hubspot-ratelimit",
    ) -> None:
        # One hash tag so every key the script touches lives in one Redis Cluster slot, after the
        # `handoff:` prefix every key of ours starts with.
        prefix = f"handoff:{{{namespace}}}"
        self._redis = redis_client
        self._account = _Budget(f"{prefix}:account", account_limit)
        self._search = _Budget(f"{prefix}:search", search_limit)
        self._pause_key = f"{prefix}:pause-until"
        self._max_wait_seconds = max_wait_seconds
        self._acquire = redis_client.register_script(_ACQUIRE)
        self._pause = redis_client.register_script(_PAUSE)

    def try_acquire(self, *, search: bool = False) -> float:
        """Take a slot if one is free now and return 0, else return the seconds to wait."""
        budgets = [self._account, self._search] if search else [self._account]
        args: list[int | str] = [uuid.uuid4().hex]
        for budget in budgets:
            args.extend(budget.script_args())
        wait_us = int(self._acquire(keys=[self._pause_key, *(b.key for b in budgets)], args=args))
        return wait_us / 1_000_000

    def acquire(self, *, search: bool = False, operation: str = "") -> None:
        """Block until a slot is taken; raise TransientHubSpotError after `max_wait_seconds`."""
        deadline = time.monotonic() + self._max_wait_seconds
        while True:
            wait = self.try_acquire(search=search)
            if wait == 0:
                return
            if time.monotonic() + wait > deadline:
                raise TransientHubSpotError(
                    f"no rate-limit slot free within {self._max_wait_seconds:g}s "
                    f"(budget HUBSPOT_RATE_LIMIT={self._account.limit}"
                    + (f", HUBSPOT_SEARCH_RATE_LIMIT={self._search.limit}" if search else "")
                    + "): the account is saturated; retry later or lower the worker concurrency",
                    operation=operation,
                )
            time.sleep(wait)

    def pause(self, seconds: float) -> None:
        """Hold every process's next request for `seconds` (never shortens a longer pause)."""
        if seconds > 0:
            self._pause(keys=[self._pause_key], args=[int(seconds * 1_000_000)])

    def observe(self, headers: Mapping[str, str] | None) -> float:
        """Read HubSpot's rate-limit headers; when little is left because OTHER integrations are
        using the account, pause every process.

        When our own grants in the window explain what HubSpot says is used, our limiter already
        paces us and a pause would only waste budget. Otherwise the pause is the time the missing
        share of the window takes to free at the account's average rate:
        (10 % of Max - Remaining) / Max of the interval. Returns the pause in seconds (0: none).
        """
        values = _rate_headers(headers)
        if values is None:
            return 0.0
        maximum, remaining, interval_seconds = values
        threshold = maximum * LOW_REMAINING_SHARE
        if maximum <= 0 or remaining >= threshold:
            return 0.0
        ours = int(self._redis.zcard(self._account.key))
        used_by_others = maximum - ours - remaining
        if used_by_others <= 0:
            return 0.0
        pause = interval_seconds * (threshold - remaining + 1) / maximum
        self.pause(pause)
        log.info(
            "HubSpot rate budget nearly spent; pausing all processes",
            extra={
                "remaining": remaining,
                "max": maximum,
                "used_by_others": used_by_others,
                "pause_seconds": round(pause, 3),
            },
        )
        return pause


def _rate_headers(headers: Mapping[str, str] | None) -> tuple[float, float, float] | None:
    if not headers:
        return None
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        maximum = float(lowered["x-hubspot-ratelimit-max"])
        remaining = float(lowered["x-hubspot-ratelimit-remaining"])
    except (KeyError, ValueError):
        return None
    try:
        interval = float(lowered.get("x-hubspot-ratelimit-interval-milliseconds", "10000")) / 1000
    except ValueError:
        interval = 10.0
    return maximum, remaining, interval
