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

import contextvars
import logging
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import redis

from handoff_worker.domain.models import WorkClass
from handoff_worker.errors import DailyReserveReachedError, TransientHubSpotError
from handoff_worker.settings import RateLimit

log = logging.getLogger(__name__)

# KEYS: pause key, live-activity key, daily-budget hash, then one sorted set per budget (the
# account's first). ARGV: a unique member, the work class ('live' or 'bulk'), the account requests
# bulk work may hold in a window while live work is active, the daily share kept in reserve, then
# for each budget its request count and window in microseconds.
# Returns 0 when a slot was taken in every budget, -1 when bulk work must stop for the daily
# reserve, or the microseconds to wait before asking again (nothing is taken then).
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local work_class = ARGV[2]
local account_window = tonumber(ARGV[6])
if work_class == 'live' then
  -- Live work announces itself for one window, asking or waiting: bulk work steps back to its share.
  redis.call('SET', KEYS[2], '1', 'PX', math.ceil(account_window / 1000))
end
local paused_until = tonumber(redis.call('GET', KEYS[1]) or '0')
if paused_until > now then
  return paused_until - now
end
local bulk_limit = nil
if work_class == 'bulk' then
  local daily = redis.call('HMGET', KEYS[3], 'max', 'remaining')
  local daily_max, daily_remaining = tonumber(daily[1]), tonumber(daily[2])
  if daily_max and daily_remaining and daily_max > 0
      and daily_remaining <= daily_max * tonumber(ARGV[4]) then
    return -1
  end
  if redis.call('EXISTS', KEYS[2]) == 1 then bulk_limit = tonumber(ARGV[3]) end
end
local wait = 0
for i = 4, #KEYS do
  local limit = tonumber(ARGV[(i - 4) * 2 + 5])
  local window = tonumber(ARGV[(i - 4) * 2 + 6])
  if i == 4 and bulk_limit and bulk_limit < limit then limit = bulk_limit end
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - window)
  local count = redis.call('ZCARD', KEYS[i])
  if count >= limit then
    -- Free once enough of the oldest grants leave the window to bring the count under the limit.
    local blocking = redis.call('ZRANGE', KEYS[i], count - limit, count - limit, 'WITHSCORES')
    local free_at = tonumber(blocking[2]) + window + 1
    if free_at - now > wait then
      wait = free_at - now
    end
  end
end
if wait > 0 then
  return wait
end
for i = 4, #KEYS do
  local window = tonumber(ARGV[(i - 4) * 2 + 6])
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

# KEYS: the daily hash. ARGV: max, remaining, TTL. Returns the remaining count it replaces.
_RECORD_DAILY = """
local before = redis.call('HGET', KEYS[1], 'remaining')
redis.call('HSET', KEYS[1], 'max', ARGV[1], 'remaining', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return before
"""

# KEYS: pause key, then one sorted set per budget. ARGV: each budget's window in microseconds.
# Returns the slots taken in each budget's current window, then the microseconds of pause left.
_IN_USE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local found = {}
for i = 2, #KEYS do
  found[#found + 1] = redis.call('ZCOUNT', KEYS[i], now - tonumber(ARGV[i - 1]), '+inf')
end
local paused_until = tonumber(redis.call('GET', KEYS[1]) or '0')
found[#found + 1] = math.max(0, paused_until - now)
return found
"""

LOW_REMAINING_SHARE = 0.10
DEFAULT_BULK_SHARE = 0.7
DEFAULT_DAILY_RESERVE = 0.2
# The daily figures read from HubSpot's headers are trusted this long. Past it, bulk work may send
# one request to read them again (the daily count resets at midnight in the account's time zone,
# and live work may not be there to see it).
DAILY_OBSERVATION_TTL_SECONDS = 300
# When bulk work finds the daily reserve reached, it asks again after this long.
DAILY_RESERVE_RECHECK_SECONDS = 60.0

_work_class: contextvars.ContextVar[WorkClass] = contextvars.ContextVar("work_class", default=WorkClass.LIVE)


@contextmanager
def work_class(value: WorkClass) -> Iterator[None]:
    """Every HubSpot call made within this block counts as `value`'s (bulk: a sweep, a backfill,
    a handoff from the bulk queue). Calls are live unless said otherwise."""
    token = _work_class.set(value)
    try:
        yield
    finally:
        _work_class.reset(token)


def current_work_class() -> WorkClass:
    return _work_class.get()


@dataclass(frozen=True)
class BudgetUse:
    """What the shared budgets hold now: slots taken in the current windows, and any pause."""

    account_used: int
    account_limit: RateLimit
    search_used: int
    search_limit: RateLimit
    paused_seconds: float


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
        bulk_share: float = DEFAULT_BULK_SHARE,
        daily_reserve: float = DEFAULT_DAILY_RESERVE,
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
        self._live_key = f"{prefix}:live-active"
        self.daily_key = f"{prefix}:daily"
        # At least one request a window, so a tiny budget still lets bulk work move.
        self._bulk_requests = max(1, int(account_limit.requests * bulk_share))
        self._daily_reserve = daily_reserve
        self._max_wait_seconds = max_wait_seconds
        self._acquire = redis_client.register_script(_ACQUIRE)
        self._pause = redis_client.register_script(_PAUSE)
        self._record_daily = redis_client.register_script(_RECORD_DAILY)
        self._in_use = redis_client.register_script(_IN_USE)

    def in_use(self) -> BudgetUse:
        """Slots taken in each budget's window now (by every process), read with Redis's clock."""
        budgets = (self._account, self._search)
        account, search, paused_us = self._in_use(
            keys=[self._pause_key, *(b.key for b in budgets)],
            args=[b.script_args()[1] for b in budgets],
        )
        return BudgetUse(
            int(account), self._account.limit, int(search), self._search.limit, int(paused_us) / 1_000_000
        )

    def try_acquire(self, *, search: bool = False, work: WorkClass | None = None) -> float:
        """Take a slot if one is free now and return 0, else return the seconds to wait. Raises
        DailyReserveReachedError for bulk work once the daily reserve is reached."""
        work = work or current_work_class()
        budgets = [self._account, self._search] if search else [self._account]
        args: list[int | str | float] = [uuid.uuid4().hex, str(work), self._bulk_requests]
        args.append(self._daily_reserve)
        for budget in budgets:
            args.extend(budget.script_args())
        keys = [self._pause_key, self._live_key, self.daily_key, *(b.key for b in budgets)]
        wait_us = int(self._acquire(keys=keys, args=args))
        if wait_us < 0:
            raise self._reserve_reached()
        return wait_us / 1_000_000

    def _reserve_reached(self) -> DailyReserveReachedError:
        daily = self.daily_budget()
        left = f"{daily.remaining:,} of {daily.maximum:,}" if daily else "too little"
        return DailyReserveReachedError(
            f"bulk work stopped: {left} of today's HubSpot API calls are left, within the "
            f"{self._daily_reserve:.0%} kept for live handoffs and the portal's other integrations "
            "(HANDOFF_DAILY_RESERVE); live handoffs go on, bulk work resumes when HubSpot's daily count "
            "resets",
            retry_after=DAILY_RESERVE_RECHECK_SECONDS,
        )

    def daily_budget(self) -> DailyBudget | None:
        """The account's daily budget as HubSpot last reported it (None: not seen recently)."""
        raw = self._redis.hmget(self.daily_key, ["max", "remaining"])
        values = [v.decode() if isinstance(v, bytes) else v for v in raw]
        if values[0] is None or values[1] is None:
            return None
        return DailyBudget(int(float(values[0])), int(float(values[1])), self._daily_reserve)

    def acquire(self, *, search: bool = False, operation: str = "") -> None:
        """Block until a slot is taken; raise TransientHubSpotError after `max_wait_seconds`, and
        DailyReserveReachedError when bulk work reaches the daily reserve."""
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
        self._observe_daily(headers)
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

    def _observe_daily(self, headers: Mapping[str, str] | None) -> None:
        daily = _daily_headers(headers)
        if daily is not None:
            self.record_daily(*daily)

    def record_daily(self, maximum: int, remaining: int) -> None:
        """Keep HubSpot's latest daily figures for every process (a DAILY 429 records 0 left)."""
        previous = self._record_daily(
            keys=[self.daily_key], args=[maximum, remaining, DAILY_OBSERVATION_TTL_SECONDS]
        )
        now = DailyBudget(maximum, remaining, self._daily_reserve)
        before = DailyBudget(maximum, int(float(previous)), self._daily_reserve) if previous else None
        if now.reserve_reached and (before is None or not before.reserve_reached):
            log.warning(
                "HubSpot daily budget down to its reserve: bulk work stops, live handoffs go on",
                extra={"daily_max": maximum, "daily_remaining": remaining, "reserve": self._daily_reserve},
            )


@dataclass(frozen=True)
class DailyBudget:
    maximum: int
    remaining: int
    reserve: float  # the share kept for live work and other integrations

    @property
    def reserve_reached(self) -> bool:
        return self.maximum > 0 and self.remaining <= self.maximum * self.reserve


def _daily_headers(headers: Mapping[str, str] | None) -> tuple[int, int] | None:
    if not headers:
        return None
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        return int(lowered["x-hubspot-ratelimit-daily"]), int(lowered["x-hubspot-ratelimit-daily-remaining"])
    except (KeyError, ValueError):
        return None


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
