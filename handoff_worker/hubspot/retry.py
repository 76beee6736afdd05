"""The one retry policy for HubSpot calls.

The SDK retries nothing and `requests` is used without adapters' retries, so this is the only
layer that sends a request again. Bounded in attempts and in total time, exponential backoff with
jitter, HubSpot's own hints honoured (Retry-After, the rolling window, 423's two seconds).

Tests switch the waits to instant with `instant_waits()`; the wait *computation* stays real and is
tested on its own.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import tenacity

from handoff_worker.errors import DailyLimitError, HubSpotError, RateLimitedError, TransientHubSpotError
from handoff_worker.hubspot.translate import RequestNotSentError

log = logging.getLogger(__name__)
T = TypeVar("T")

LOCKED_MIN_WAIT_SECONDS = 2.0  # HubSpot's documented minimum pause after a 423

_instant = False


@contextmanager
def instant_waits() -> Iterator[None]:
    """Within this block every retry wait is computed and logged but not slept."""
    global _instant
    previous, _instant = _instant, True
    try:
        yield
    finally:
        _instant = previous


def set_instant_waits(enabled: bool) -> None:
    """Switch instant waits on or off for the whole process (e.g. in a test's worker process)."""
    global _instant
    _instant = enabled


def _sleep(seconds: float) -> None:
    if not _instant:
        time.sleep(seconds)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    max_total_seconds: float = 60.0
    backoff_base_seconds: float = 0.5
    backoff_max_seconds: float = 30.0


DEFAULT_POLICY = RetryPolicy()


def backoff_seconds(attempt: int, policy: RetryPolicy, rng: random.Random | None = None) -> float:
    """Exponential backoff with jitter for the wait after failed attempt number `attempt` (1-based):
    a random point in the upper half of the exponential step, so processes that failed together
    do not come back together."""
    step = min(policy.backoff_max_seconds, policy.backoff_base_seconds * 2 ** (attempt - 1))
    return step * (0.5 + 0.5 * (rng or random).random())


def wait_seconds(
    error: HubSpotError, attempt: int, policy: RetryPolicy = DEFAULT_POLICY, rng: random.Random | None = None
) -> float:
    """How long to wait before trying again after `error` on attempt number `attempt`."""
    if isinstance(error, RateLimitedError) and error.retry_after is not None:
        # Retry-After, or the rolling window's length when HubSpot gave no Retry-After (the
        # translation fills it in): coming back sooner would only earn another 429.
        return error.retry_after
    backoff = backoff_seconds(attempt, policy, rng)
    if error.status == 423:
        return max(LOCKED_MIN_WAIT_SECONDS, backoff)
    if error.retry_after is not None:
        return max(error.retry_after, 0.0)
    return backoff


def is_retryable(error: HubSpotError, *, idempotent: bool) -> bool:
    """Whether `error` is worth another attempt.

    A non-idempotent request (creating a task) is only sent again when HubSpot surely did not act
    on it: the connection never opened, or HubSpot answered 429 (rejected before processing). A
    timeout or a 5xx may come after HubSpot created the record, and a second POST would create a
    duplicate task for the owner.
    """
    if isinstance(error, DailyLimitError) or not isinstance(error, TransientHubSpotError):
        return False
    if idempotent:
        return True
    return isinstance(error, RequestNotSentError) or error.status == 429


def call_with_retry(
    attempt_once: Callable[[], T],
    *,
    operation: str,
    idempotent: bool = True,
    policy: RetryPolicy = DEFAULT_POLICY,
) -> T:
    """Run `attempt_once` (which raises only our errors) until it succeeds or the policy gives up;
    then the last error is raised as it is."""
    started = time.monotonic()

    def wait(state: tenacity.RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        assert isinstance(error, HubSpotError)  # the retry predicate only lets our errors through
        return wait_seconds(error, state.attempt_number, policy)

    def stop(state: tenacity.RetryCallState) -> bool:
        if state.attempt_number >= policy.max_attempts:
            return True
        error = state.outcome.exception() if state.outcome else None
        assert isinstance(error, HubSpotError)
        # Give up now rather than sleep past the total budget and fail anyway.
        next_wait = wait_seconds(error, state.attempt_number, policy)
        return time.monotonic() - started + next_wait > policy.max_total_seconds

    def log_retry(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.warning(
            "retrying HubSpot call",
            extra={
                "operation": operation,
                "status": getattr(error, "status", None),
                "error": type(error).__name__,
                "attempt": state.attempt_number,
                "wait_seconds": round(state.upcoming_sleep, 3),
            },
        )

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(
            lambda exc: isinstance(exc, HubSpotError) and is_retryable(exc, idempotent=idempotent)
        ),
        wait=wait,
        stop=stop,
        before_sleep=log_retry,
        sleep=_sleep,
        reraise=True,
    )
    return retrying(attempt_once)
