"""The Redis rate limiter: budgets, the search budget, the shared pause, and 8 processes at once."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator

import pytest
import redis
from gateway_fixtures import hammer

from handoff_worker.errors import TransientHubSpotError
from handoff_worker.hubspot.ratelimit import RedisRateLimiter, safety_margin_seconds
from handoff_worker.sandbox.testing import SandboxServer
from handoff_worker.settings import RateLimit
from handoff_worker.testing import busiest_window


@pytest.fixture
def connection(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def limiter(
    connection: redis.Redis, account: str = "5/10s", search: str = "2/10s", max_wait_seconds: float = 60.0
) -> RedisRateLimiter:
    def parse(text: str) -> RateLimit:
        return RateLimit.parse(text, variable="TEST", example="5/10s")

    return RedisRateLimiter(connection, parse(account), parse(search), max_wait_seconds=max_wait_seconds)


def test_the_account_budget_is_shared_between_limiters(connection: redis.Redis) -> None:
    first, second = limiter(connection), limiter(connection)  # two processes' views

    grants = [first.try_acquire() for _ in range(3)] + [second.try_acquire() for _ in range(2)]
    wait = second.try_acquire()

    assert grants == [0.0] * 5
    assert 10.0 < wait <= 10.0 + safety_margin_seconds(10.0)
    assert first.try_acquire() > 0


def test_a_search_takes_from_both_budgets(connection: redis.Redis) -> None:
    shared = limiter(connection, account="3/10s", search="2/10s")

    assert [shared.try_acquire(search=True) for _ in range(2)] == [0.0, 0.0]
    assert shared.try_acquire(search=True) > 0  # the search budget is spent...
    assert shared.try_acquire() == 0.0  # ...the account budget had one left
    assert shared.try_acquire() > 0


def test_a_refused_request_takes_nothing(connection: redis.Redis) -> None:
    shared = limiter(connection, account="3/10s", search="1/10s")
    shared.try_acquire(search=True)
    for _ in range(5):
        assert shared.try_acquire(search=True) > 0
    assert [shared.try_acquire() for _ in range(2)] == [0.0, 0.0]


def test_low_remaining_pauses_every_process(connection: redis.Redis) -> None:
    observer, other = limiter(connection, account="100/10s"), limiter(connection, account="100/10s")
    headers = {
        "X-HubSpot-RateLimit-Max": "100",
        "X-HubSpot-RateLimit-Remaining": "3",
        "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
    }

    pause = observer.observe(headers)

    assert pause == pytest.approx(0.8)  # (10 - 3 + 1) slots of 10 s / 100
    assert 0.5 < other.try_acquire() <= 0.8


@pytest.mark.parametrize(("ours", "expected_pause"), [(97, 0.0), (95, 0.8), (60, 0.8)])
def test_low_remaining_pauses_only_for_what_other_integrations_use(
    connection: redis.Redis, ours: int, expected_pause: float
) -> None:
    """Our own grants explain a low Remaining: the limiter already paces us, a pause would waste
    budget. Only when HubSpot says more is used than we took is the account shared."""
    observer = limiter(connection, account="100/10s")
    assert [observer.try_acquire() for _ in range(ours)] == [0.0] * ours
    headers = {
        "X-HubSpot-RateLimit-Max": "100",
        "X-HubSpot-RateLimit-Remaining": "3",
        "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
    }

    assert observer.observe(headers) == pytest.approx(expected_pause)


def test_an_explicit_pause_holds_every_process_and_is_never_shortened(connection: redis.Redis) -> None:
    first, second = limiter(connection), limiter(connection)

    first.pause(3.0)
    first.pause(0.5)

    assert 2.5 < second.try_acquire() <= 3.0


@pytest.mark.parametrize(
    "headers",
    [
        {"X-HubSpot-RateLimit-Max": "100", "X-HubSpot-RateLimit-Remaining": "10"},
        {"X-HubSpot-RateLimit-Max": "100"},
        {},
        {"X-HubSpot-RateLimit-Max": "x", "X-HubSpot-RateLimit-Remaining": "1"},
    ],
)
def test_no_pause_without_a_low_remaining(connection: redis.Redis, headers: dict[str, str]) -> None:
    shared = limiter(connection)
    assert shared.observe(headers) == 0.0
    assert shared.try_acquire() == 0.0


def test_acquire_gives_up_after_the_max_wait(connection: redis.Redis) -> None:
    shared = limiter(connection, account="1/10s", max_wait_seconds=0.5)
    shared.acquire(operation="get deal")

    with pytest.raises(TransientHubSpotError) as caught:
        shared.acquire(operation="get deal")

    assert "HUBSPOT_RATE_LIMIT=1/10s" in str(caught.value) and caught.value.operation == "get deal"


def test_acquire_sleeps_until_a_slot_frees(connection: redis.Redis) -> None:
    shared = limiter(connection, account="2/0.2s", max_wait_seconds=5)
    granted_at = []
    for _ in range(3):
        shared.acquire()
        seconds, micros = connection.time()
        granted_at.append(seconds + micros / 1e6)

    # The third grant waited for the first to leave the (margin-widened) window.
    assert granted_at[2] - granted_at[0] >= 0.2 + safety_margin_seconds(0.2) - 0.01


@pytest.mark.slow
@pytest.mark.parametrize(("search", "budget"), [(False, "20/1s"), (True, "5/1s")])
def test_eight_processes_stay_within_the_budget(
    hub: SandboxServer, redis_url: str, search: bool, budget: str
) -> None:
    """8 OS processes, each with its own gateway and the same Redis, against a sandbox that
    enforces exactly the budget: no 429, and no window in its log holds more than the budget."""
    hub.control.configure(rate_limit="20/1s", search_per_second=5)
    hub.control.clear_requests()
    per_process = 8 if not search else 2
    context = multiprocessing.get_context("spawn")
    with context.Pool(8) as pool:
        results = pool.starmap(hammer, [(hub.url, redis_url, budget, per_process, search)] * 8)

    logged = hub.control.requests("/crm/")
    assert sum(calls for calls, _ in results) == 8 * per_process
    assert [errors for _, errors in results] == [[]] * 8
    assert len(logged) == 8 * per_process
    assert {r["status"] for r in logged} == {200}
    limit = 20 if not search else 5
    assert busiest_window([r["at"] for r in logged], 1000) <= limit
