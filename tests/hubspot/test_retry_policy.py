"""The retry policy on data: what is retried, how long each wait is, where it stops."""

from __future__ import annotations

import random

import pytest

from handoff_worker.errors import (
    DailyLimitError,
    HubSpotError,
    NotFoundError,
    PermanentHubSpotError,
    RateLimitedError,
    TransientHubSpotError,
)
from handoff_worker.hubspot.retry import (
    RetryPolicy,
    backoff_seconds,
    call_with_retry,
    instant_waits,
    is_retryable,
    wait_seconds,
)
from handoff_worker.hubspot.translate import RequestNotSentError, error_from_response

POLICY = RetryPolicy(max_attempts=4, max_total_seconds=30, backoff_base_seconds=0.5, backoff_max_seconds=4)


def rolling_429(headers: dict[str, str]) -> HubSpotError:
    body = b'{"status":"error","errorType":"RATE_LIMIT","policyName":"TEN_SECONDLY_ROLLING","message":"slow"}'
    return error_from_response(429, headers, body, "get deal")


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"Retry-After": "2", "X-HubSpot-RateLimit-Interval-Milliseconds": "10000"}, 2.0),
        ({"X-HubSpot-RateLimit-Interval-Milliseconds": "1000"}, 1.0),
        ({}, 10.0),
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, 10.0),  # dates are ignored: the window
    ],
)
def test_rolling_429_waits_for_retry_after_or_the_window(headers: dict[str, str], expected: float) -> None:
    for attempt in (1, 3):
        assert wait_seconds(rolling_429(headers), attempt, POLICY) == expected


def test_423_waits_at_least_two_seconds_and_backs_off_beyond() -> None:
    locked = TransientHubSpotError("locked", status=423)
    assert wait_seconds(locked, 1, POLICY) == 2.0
    assert 2.0 <= wait_seconds(locked, 4, POLICY) <= 4.0


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    rng = random.Random(7)
    waits = [[backoff_seconds(n, POLICY, rng) for _ in range(200)] for n in range(1, 6)]
    for n, samples in enumerate(waits, start=1):
        step = min(4.0, 0.5 * 2 ** (n - 1))
        assert all(step / 2 <= w <= step for w in samples)
        assert len({round(w, 6) for w in samples}) > 100  # jittered, not one value


def test_5xx_waits_with_backoff() -> None:
    error = error_from_response(503, {}, b'{"message":"down"}', "get deal")
    assert 0.25 <= wait_seconds(error, 1, POLICY) <= 0.5


@pytest.mark.parametrize(
    ("error", "idempotent", "expected"),
    [
        (TransientHubSpotError("5xx", status=503), True, True),
        (TransientHubSpotError("5xx", status=503), False, False),
        (TransientHubSpotError("timed out"), False, False),
        (TransientHubSpotError("timed out"), True, True),
        (RequestNotSentError("refused"), False, True),
        (RateLimitedError("429", status=429, policy="TEN_SECONDLY_ROLLING"), False, True),
        (DailyLimitError("429", status=429, policy="DAILY"), True, False),
        (PermanentHubSpotError("bad", status=400), True, False),
        (NotFoundError("gone", status=404), True, False),
    ],
)
def test_what_is_retried(error: HubSpotError, idempotent: bool, expected: bool) -> None:
    assert is_retryable(error, idempotent=idempotent) is expected


class Flaky:
    """Raises the given errors in turn, then answers."""

    def __init__(self, *errors: HubSpotError) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def test_call_with_retry_stops_at_the_attempt_bound() -> None:
    flaky = Flaky(*[TransientHubSpotError("down", status=502) for _ in range(10)])
    with instant_waits(), pytest.raises(TransientHubSpotError):
        call_with_retry(flaky, operation="x", policy=POLICY)
    assert flaky.calls == 4


def test_call_with_retry_gives_up_rather_than_sleep_past_the_time_bound() -> None:
    flaky = Flaky(rolling_429({"Retry-After": "60"}))
    with instant_waits(), pytest.raises(RateLimitedError):
        call_with_retry(flaky, operation="x", policy=POLICY)
    assert flaky.calls == 1


def test_call_with_retry_never_retries_daily_or_permanent() -> None:
    for error in (DailyLimitError("d", status=429, policy="DAILY"), PermanentHubSpotError("p", status=400)):
        flaky = Flaky(error)
        with instant_waits(), pytest.raises(type(error)):
            call_with_retry(flaky, operation="x", policy=POLICY)
        assert flaky.calls == 1


def test_call_with_retry_returns_after_transient_failures() -> None:
    flaky = Flaky(TransientHubSpotError("down", status=503), rolling_429({}))
    with instant_waits():
        assert call_with_retry(flaky, operation="x", policy=POLICY) == "ok"
    assert flaky.calls == 3
