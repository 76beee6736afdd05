"""The task's retry policy, run in this process (Celery's eager `apply`) against the sandbox."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from handoff_worker import tasks, wiring
from handoff_worker.celery_app import VISIBILITY_TIMEOUT_SECONDS
from handoff_worker.domain.models import RecordKind
from handoff_worker.errors import TransientHubSpotError
from handoff_worker.handoff.deadletter import get_failure
from handoff_worker.handoff.engine import HandoffEngine
from handoff_worker.hubspot.gateway import build_gateway
from handoff_worker.hubspot.retry import DEFAULT_POLICY
from handoff_worker.hubspot.translate import error_from_response
from handoff_worker.nurture_config import RulesStore
from handoff_worker.sandbox.testing import SandboxServer
from handoff_worker.settings import Settings


@pytest.fixture
def wired(settings_for: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    settings = settings_for()
    monkeypatch.setenv("HUBSPOT_BASE_URL", settings.hubspot_base_url)
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", settings.hubspot_access_token)
    monkeypatch.setenv("HANDOFF_CONFIG", str(settings.handoff_config))
    monkeypatch.setenv("REDIS_URL", settings.redis_url)
    wiring.reset_wiring()
    yield
    wiring.reset_wiring()


def test_transient_failures_are_retried_then_kept_in_the_dead_letter(
    hub: SandboxServer, wired: None, redis_conn: redis.Redis
) -> None:
    hub.control.lose_deal("2001", "Pricing")
    hub.control.fail_next(100, 503, path_prefix="/crm/v3/objects/deals/2001")
    # Eagerly, Celery runs each retry at once in this process (the countdown is not waited).
    result = tasks.handoff_deal.apply(kwargs={"deal_id": "2001", "trigger": "webhook"}, throw=False)
    assert result.result == {"outcome": "dead_letter"}
    runs = tasks.MAX_RETRIES + 1
    assert len(hub.control.requests("/crm/v3/objects/deals/2001")) == runs * DEFAULT_POLICY.max_attempts
    failure = get_failure(redis_conn, RecordKind.DEAL, "2001")
    assert failure is not None and failure.attempts == runs and "503" in failure.error
    assert failure.trigger == "webhook" and not failure.permanent


def test_a_late_success_is_not_dead_lettered(
    hub: SandboxServer, wired: None, redis_conn: redis.Redis
) -> None:
    hub.control.lose_deal("2001", "Pricing")
    hub.control.fail_next(DEFAULT_POLICY.max_attempts * 2, 503, path_prefix="/crm/v3/objects/deals/2001")
    result = tasks.handoff_deal.apply(kwargs={"deal_id": "2001", "trigger": "webhook"}, throw=False)
    assert result.result["outcome"] == "handed_off"
    assert get_failure(redis_conn, RecordKind.DEAL, "2001") is None


@pytest.mark.parametrize(("retries", "low", "high"), [(0, 15, 30), (3, 120, 240), (8, 600, 1200)])
def test_backoff_grows_and_is_capped(retries: int, low: float, high: float) -> None:
    assert all(low <= tasks.backoff_seconds(retries) <= high for _ in range(50))


def test_permanent_error_is_dead_lettered_not_lost(
    hub: SandboxServer, wired: None, redis_conn: redis.Redis
) -> None:
    hub.control.lose_deal("2001", "Pricing")
    hub.control.fail_next(1, 403, path_prefix="/crm/v3/objects/deals/2001")
    result = tasks.handoff_deal.apply(kwargs={"deal_id": "2001", "trigger": "webhook"}, throw=False)
    assert result.successful() and result.result == {"outcome": "dead_letter"}
    assert len(hub.control.requests("/crm/v3/objects/deals/2001")) == 1  # not retried
    failure = get_failure(redis_conn, RecordKind.DEAL, "2001")
    assert failure is not None and failure.permanent
    assert "permanent" in failure.error and "403" in failure.error


def test_retry_countdown_never_outlasts_the_visibility_timeout() -> None:
    huge = error_from_response(429, {"Retry-After": "86400"}, b"{}", "get deal")
    assert isinstance(huge, TransientHubSpotError) and huge.retry_after == 86400
    assert tasks.retry_countdown(huge, 0) == tasks.BACKOFF_CAP_SECONDS
    assert tasks.BACKOFF_CAP_SECONDS < VISIBILITY_TIMEOUT_SECONDS
    small = error_from_response(429, {"Retry-After": "7"}, b"{}", "get deal")
    assert isinstance(small, TransientHubSpotError) and tasks.retry_countdown(small, 0) == 7


class ClosingListener:
    """A TCP port that accepts and at once closes every connection: Redis gone mid-failover."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()


def test_redis_errors_are_retried_a_bounded_number_of_times(
    hub: SandboxServer, settings_for: Callable[..., Settings], redis_conn: redis.Redis
) -> None:
    listener = ClosingListener()
    broken = redis.Redis(port=listener.port, retry=Retry(NoBackoff(), 0), socket_timeout=2)
    settings = settings_for()
    gateway = build_gateway(settings, redis_conn)
    store = RulesStore(settings.handoff_config)
    engine = HandoffEngine(gateway, broken, store.current_with_version)
    wiring.install_wiring(wiring.Wiring(settings, broken, gateway, store, engine))
    try:
        result = tasks.handoff_deal.apply(kwargs={"deal_id": "2001"}, throw=False)
    finally:
        wiring.reset_wiring()
        listener.server.close()
    assert isinstance(result.result, redis.RedisError)
    # One connection per run: the first run and MAX_RETRIES retries, then the task gives up and the
    # failure guard tries to keep it in the dead letter, which lives in that same broken Redis.
    assert listener.accepted == tasks.MAX_RETRIES + 2
