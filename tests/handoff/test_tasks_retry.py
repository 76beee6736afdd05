"""The task's retry policy, run in this process (Celery's eager `apply`) against the sandbox."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from handoff_worker import tasks
from handoff_worker.handoff.deadletter import get_failure
from handoff_worker.hubspot.retry import DEFAULT_POLICY
from handoff_worker.settings import Settings


@pytest.fixture
def wired(settings_for: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    settings = settings_for()
    monkeypatch.setenv("HUBSPOT_BASE_URL", settings.hubspot_base_url)
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", settings.hubspot_access_token)
    monkeypatch.setenv("HANDOFF_CONFIG", str(settings.handoff_config))
    monkeypatch.setenv("REDIS_URL", settings.redis_url)
    tasks.reset_wiring()
    yield
    tasks.reset_wiring()


def test_transient_failures_are_retried_then_kept_in_the_dead_letter(
    hub: Any, wired: None, redis_conn: redis.Redis
) -> None:
    hub.control.lose_deal("2001", "Pricing")
    hub.control.fail_next(100, 503, path_prefix="/crm/v3/objects/deals/2001")
    # Eagerly, Celery runs each retry at once in this process (the countdown is not waited).
    result = tasks.handoff_deal.apply(kwargs={"deal_id": "2001", "trigger": "webhook"}, throw=False)
    assert result.result == {"outcome": "dead_letter"}
    runs = tasks.MAX_RETRIES + 1
    assert len(hub.control.requests("/crm/v3/objects/deals/2001")) == runs * DEFAULT_POLICY.max_attempts
    failure = get_failure(redis_conn, "deal", "2001")
    assert failure is not None and failure.attempts == runs and "503" in failure.error
    assert failure.trigger == "webhook" and not failure.permanent


def test_a_late_success_is_not_dead_lettered(hub: Any, wired: None, redis_conn: redis.Redis) -> None:
    hub.control.lose_deal("2001", "Pricing")
    hub.control.fail_next(DEFAULT_POLICY.max_attempts * 2, 503, path_prefix="/crm/v3/objects/deals/2001")
    result = tasks.handoff_deal.apply(kwargs={"deal_id": "2001", "trigger": "webhook"}, throw=False)
    assert result.result["outcome"] == "handed_off"
    assert get_failure(redis_conn, "deal", "2001") is None


@pytest.mark.parametrize(("retries", "low", "high"), [(0, 15, 30), (3, 120, 240), (8, 600, 1200)])
def test_backoff_grows_and_is_capped(retries: int, low: float, high: float) -> None:
    assert all(low <= tasks.backoff_seconds(retries) <= high for _ in range(50))
