"""Live work first: bulk work's share of the rate budget, and the daily reserve it leaves."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis
from gateway_fixtures import settings_for

from handoff_worker.domain.models import WorkClass
from handoff_worker.errors import DailyLimitError, DailyReserveReachedError
from handoff_worker.hubspot.gateway import SdkGateway, build_gateway
from handoff_worker.hubspot.ratelimit import RedisRateLimiter, work_class
from handoff_worker.hubspot.retry import instant_waits
from handoff_worker.sandbox.testing import SandboxServer
from handoff_worker.settings import RateLimit

LIVE, BULK = WorkClass.LIVE, WorkClass.BULK


@pytest.fixture
def connection(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def limiter(connection: redis.Redis, *, share: float = 0.5, reserve: float = 0.2) -> RedisRateLimiter:
    return RedisRateLimiter(
        connection, RateLimit(10, 10.0), RateLimit(5, 1.0), bulk_share=share, daily_reserve=reserve
    )


def test_bulk_work_alone_uses_the_whole_budget(connection: redis.Redis) -> None:
    shared = limiter(connection)
    assert [shared.try_acquire(work=BULK) for _ in range(10)] == [0.0] * 10
    assert shared.try_acquire(work=BULK) > 0


def test_bulk_work_steps_back_to_its_share_while_live_work_runs(connection: redis.Redis) -> None:
    bulk_process, live_process = limiter(connection), limiter(connection)
    assert live_process.try_acquire(work=LIVE) == 0.0
    # 5 of 10 for bulk work while live work is about, the live grant included.
    assert [bulk_process.try_acquire(work=BULK) for _ in range(4)] == [0.0] * 4
    assert bulk_process.try_acquire(work=BULK) > 0
    # The rest is live work's.
    assert [live_process.try_acquire(work=LIVE) for _ in range(5)] == [0.0] * 5
    assert live_process.try_acquire(work=LIVE) > 0


def test_live_work_waiting_on_a_full_window_takes_the_next_slot_before_bulk(connection: redis.Redis) -> None:
    shared = limiter(connection)
    assert [shared.try_acquire(work=BULK) for _ in range(5)] == [0.0] * 5
    # The later half of the window is granted a second later, so bulk work's wait (for the window
    # to fall to its share) outlasts live work's (for the oldest grant) by that second, however
    # slowly a loaded machine makes the next two calls.
    time.sleep(1.0)
    assert [shared.try_acquire(work=BULK) for _ in range(5)] == [0.0] * 5
    live_wait = shared.try_acquire(work=LIVE)  # refused, but live work is now known to wait
    assert live_wait > 0
    # Bulk work must wait for the window to fall to its share: longer than live work's wait.
    assert shared.try_acquire(work=BULK) > live_wait


def test_the_work_class_is_taken_from_the_calling_context(connection: redis.Redis) -> None:
    shared = limiter(connection)
    shared.try_acquire()  # live by default: bulk work is now held to its share
    with work_class(BULK):
        assert [shared.try_acquire() for _ in range(4)] == [0.0] * 4
        assert shared.try_acquire() > 0
    assert shared.try_acquire() == 0.0


def test_bulk_work_stops_at_the_daily_reserve_and_live_work_goes_on(connection: redis.Redis) -> None:
    shared = limiter(connection, reserve=0.2)
    shared.record_daily(1000, 201)
    assert shared.try_acquire(work=BULK) == 0.0
    shared.record_daily(1000, 200)
    with pytest.raises(DailyReserveReachedError, match="HANDOFF_DAILY_RESERVE") as refused:
        shared.try_acquire(work=BULK)
    assert "200 of 1,000" in str(refused.value)
    assert shared.try_acquire(work=LIVE) == 0.0


def test_a_reserve_of_zero_lets_bulk_work_spend_the_day(connection: redis.Redis) -> None:
    shared = limiter(connection, reserve=0.0)
    shared.record_daily(1000, 1)
    assert shared.try_acquire(work=BULK) == 0.0


# --- against the sandbox, which sends HubSpot's daily headers -----------------------------------


@pytest.fixture
def small_day(hub: SandboxServer, redis_url: str) -> Iterator[tuple[SandboxServer, SdkGateway]]:
    hub.control.configure(rate_limit="100000/10s", daily_limit=50, search_per_second=1000)
    connection = redis.Redis.from_url(redis_url)
    settings = settings_for(hub.url, HANDOFF_DAILY_RESERVE="20%")
    with instant_waits():
        yield hub, build_gateway(settings, connection)
    connection.close()


def test_bulk_work_stops_at_the_reserve_of_a_small_daily_limit(
    small_day: tuple[SandboxServer, SdkGateway],
) -> None:
    hub, gateway = small_day
    hub.control.clear_requests()
    bulk_calls = 0
    with work_class(BULK), pytest.raises(DailyReserveReachedError):
        for _ in range(50):
            gateway.get_deal("500", ["dealname"])
            bulk_calls += 1
    # 20 % of 50 is kept: bulk work stopped with 10 calls left, read from HubSpot's own headers.
    assert bulk_calls == 40
    assert len(hub.control.requests("/crm/v3/objects/deals")) == 40
    # Live work goes on and spends the rest of the day, then meets HubSpot's own daily 429.
    for _ in range(10):
        gateway.get_deal("500", ["dealname"])
    with pytest.raises(DailyLimitError):
        gateway.get_deal("500", ["dealname"])
