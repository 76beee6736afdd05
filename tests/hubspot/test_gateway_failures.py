"""Each failure kind over the wire: translated into our errors, retried only when it should be."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import redis
from gateway_fixtures import TOKEN, settings_for

from handoff_worker.domain.models import NewTask, ObjectType
from handoff_worker.errors import (
    DailyLimitError,
    PermanentHubSpotError,
    RateLimitedError,
    TransientHubSpotError,
)
from handoff_worker.hubspot.gateway import SdkGateway, build_gateway
from handoff_worker.hubspot.retry import DEFAULT_POLICY, instant_waits
from handoff_worker.hubspot.translate import RequestNotSentError
from handoff_worker.sandbox.testing import SandboxServer
from handoff_worker.testing import free_port

DEAL_PATH = "/crm/v3/objects/deals/500"
TASKS_PATH = "/crm/v3/objects/tasks"


def retry_waits(caplog: pytest.LogCaptureFixture) -> list[float]:
    return [r.__dict__["wait_seconds"] for r in caplog.records if r.getMessage() == "retrying HubSpot call"]


def statuses(hub: SandboxServer, path: str) -> list[int]:
    return [r["status"] for r in hub.control.requests(path)]


def a_task() -> NewTask:
    return NewTask("Call back", "", owner_id=None, due_at=datetime(2030, 1, 1, tzinfo=UTC), deal_id="500")


def test_400_is_permanent_and_not_retried(gateway: SdkGateway, hub: SandboxServer) -> None:
    hub.control.fail_next(1, 400, DEAL_PATH)

    with pytest.raises(PermanentHubSpotError) as caught:
        gateway.get_deal("500", ["dealname"])

    assert caught.value.status == 400 and caught.value.category == "INJECTED_FAULT"
    assert caught.value.correlation_id and caught.value.correlation_id in str(caught.value)
    assert "get deal" in str(caught.value)
    assert statuses(hub, DEAL_PATH) == [400]
    assert gateway.calls_made == 1


def test_401_bad_token_is_permanent_and_the_token_is_never_logged(
    hub: SandboxServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = build_gateway(settings_for(hub.url, HUBSPOT_ACCESS_TOKEN="pat-wrong-secret-value"))

    with pytest.raises(PermanentHubSpotError) as caught:
        wrong.get_deal("500", ["dealname"])

    assert caught.value.status == 401 and caught.value.category == "INVALID_AUTHENTICATION"
    assert statuses(hub, DEAL_PATH) == [401]
    assert "pat-wrong-secret-value" not in caplog.text and TOKEN not in caplog.text
    assert "pat-wrong-secret-value" not in str(caught.value)


def test_5xx_is_retried_until_it_succeeds(
    gateway: SdkGateway, hub: SandboxServer, caplog: pytest.LogCaptureFixture
) -> None:
    hub.control.fail_next(2, 503, DEAL_PATH)

    deal = gateway.get_deal("500", ["dealname"])

    assert deal.properties["dealname"] == "Acme"
    assert statuses(hub, DEAL_PATH) == [503, 503, 200]
    assert gateway.calls_made == 3
    assert len(retry_waits(caplog)) == 2


def test_5xx_gives_up_after_the_attempt_bound(gateway: SdkGateway, hub: SandboxServer) -> None:
    hub.control.fail_next(50, 502, DEAL_PATH)

    with pytest.raises(TransientHubSpotError) as caught:
        gateway.get_deal("500", ["dealname"])

    assert caught.value.status == 502
    assert len(statuses(hub, DEAL_PATH)) == DEFAULT_POLICY.max_attempts


def test_429_with_retry_after_waits_what_hubspot_asks(
    unpaced: SdkGateway, hub: SandboxServer, caplog: pytest.LogCaptureFixture
) -> None:
    hub.control.set_faults(retry_after_s=3, fail_next=[{"count": 1, "status": 429, "path_prefix": DEAL_PATH}])

    unpaced.get_deal("500", ["dealname"])

    assert statuses(hub, DEAL_PATH) == [429, 200]
    assert retry_waits(caplog) == [3.0]


def test_429_without_retry_after_waits_out_the_window(
    hub: SandboxServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Real waits, no shared limiter: the sandbox's own 2/1s limit answers 429, and the retry comes
    after the window its headers name instead of hammering."""
    hub.control.configure(rate_limit="2/1s")
    unpaced = build_gateway(settings_for(hub.url))

    for _ in range(3):
        unpaced.get_deal("500", ["dealname"])

    assert statuses(hub, DEAL_PATH) == [200, 200, 429, 200]
    assert retry_waits(caplog) == [1.0]
    assert unpaced.calls_made == 4


def test_423_waits_at_least_two_seconds(
    gateway: SdkGateway, hub: SandboxServer, caplog: pytest.LogCaptureFixture
) -> None:
    hub.control.fail_next(1, 423, DEAL_PATH)

    gateway.get_deal("500", ["dealname"])

    assert statuses(hub, DEAL_PATH) == [423, 200]
    assert retry_waits(caplog)[0] >= 2.0


def test_daily_limit_is_raised_at_once(gateway: SdkGateway, hub: SandboxServer) -> None:
    hub.control.configure(daily_limit=1)
    gateway.get_deal("500", ["dealname"])

    with pytest.raises(DailyLimitError) as caught:
        gateway.get_deal("500", ["dealname"])

    assert caught.value.policy == "DAILY" and caught.value.status == 429
    assert statuses(hub, DEAL_PATH) == [200, 429]


def test_connection_refused_is_transient_and_nothing_counts_as_sent(redis_url: str) -> None:
    nowhere = build_gateway(settings_for(f"http://127.0.0.1:{free_port()}"))

    with instant_waits(), pytest.raises(RequestNotSentError) as caught:
        nowhere.get_deal("500", ["dealname"])
    with instant_waits(), pytest.raises(RequestNotSentError):
        nowhere.enroll_in_workflow("501", "c1@example.com")

    assert "HUBSPOT_BASE_URL" in str(caught.value)
    assert nowhere.calls_made == 0


def test_dropped_connection_is_transient_and_retried(gateway: SdkGateway, hub: SandboxServer) -> None:
    hub.control.set_faults(unreachable=True, path_prefixes=[DEAL_PATH])

    with pytest.raises(TransientHubSpotError):
        gateway.get_deal("500", ["dealname"])

    assert gateway.calls_made == DEFAULT_POLICY.max_attempts


@pytest.fixture
def unpaced(hub: SandboxServer) -> Iterator[SdkGateway]:
    """No shared limiter (so no shared pause after a 429), instant retry waits."""
    with instant_waits():
        yield build_gateway(settings_for(hub.url))


@pytest.fixture
def impatient(hub: SandboxServer, redis_url: str) -> Iterator[SdkGateway]:
    """A gateway whose timeout (0.3 s) is shorter than the sandbox's injected latency."""

    connection = redis.Redis.from_url(redis_url)
    hub.control.set_faults(latency_ms=600)
    with instant_waits():
        yield build_gateway(settings_for(hub.url, HUBSPOT_TIMEOUT_SECONDS="0.3"), connection)
    hub.control.clear_faults()
    connection.close()


def test_timeouts_are_transient_on_sdk_and_session_calls(impatient: SdkGateway) -> None:
    with pytest.raises(TransientHubSpotError, match="HUBSPOT_TIMEOUT_SECONDS"):
        impatient.get_list("77")
    with pytest.raises(TransientHubSpotError, match="HUBSPOT_TIMEOUT_SECONDS"):
        impatient.list_flows()


def test_create_task_is_not_resent_after_a_timeout(impatient: SdkGateway, hub: SandboxServer) -> None:
    """The sandbox created the task after our timeout: a retry would have made a duplicate."""
    with pytest.raises(TransientHubSpotError):
        impatient.create_task(a_task())

    assert impatient.calls_made == 1
    deadline = time.monotonic() + 5
    while not hub.control.requests(TASKS_PATH) and time.monotonic() < deadline:
        time.sleep(0.05)  # the sandbox is still sitting out its injected latency
    assert statuses(hub, TASKS_PATH) == [201]
    assert len(hub.control.objects("tasks")) == 1


def test_create_task_is_not_resent_after_a_5xx(gateway: SdkGateway, hub: SandboxServer) -> None:
    hub.control.fail_next(1, 503, TASKS_PATH, method="POST")

    with pytest.raises(TransientHubSpotError):
        gateway.create_task(a_task())

    assert statuses(hub, TASKS_PATH) == [503]


def test_create_task_is_resent_after_a_429(unpaced: SdkGateway, hub: SandboxServer) -> None:
    hub.control.fail_next(1, 429, TASKS_PATH, method="POST")

    task_id = unpaced.create_task(a_task())

    assert statuses(hub, TASKS_PATH) == [429, 201]
    assert [t["id"] for t in hub.control.objects("tasks")] == [task_id]


def test_batch_update_is_retried_after_a_5xx(gateway: SdkGateway, hub: SandboxServer) -> None:
    path = "/crm/v3/objects/contacts/batch/update"
    hub.control.fail_next(1, 502, path)

    result = gateway.batch_update_contacts({"1": {"lifecyclestage": ""}})

    assert [c.id for c in result.updated] == ["1"]
    assert statuses(hub, path) == [502, 200]


def test_search_429_is_a_rate_limited_error(unpaced: SdkGateway, hub: SandboxServer) -> None:
    hub.control.fail_next(50, 429, "/crm/v3/objects/deals/search")

    with pytest.raises(RateLimitedError) as caught:
        unpaced.search(ObjectType.DEAL, [], properties=["dealname"])

    assert caught.value.policy == "TEN_SECONDLY_ROLLING"


def test_a_429_pauses_every_process_for_the_retry_after(
    gateway: SdkGateway, hub: SandboxServer, redis_conn: redis.Redis
) -> None:
    hub.control.set_faults(retry_after_s=1, fail_next=[{"count": 1, "status": 429, "path_prefix": DEAL_PATH}])

    gateway.get_deal("500", ["dealname"])

    first, second = hub.control.requests(DEAL_PATH)
    assert (first["status"], second["status"]) == (429, 200)
    # The retry waited in the shared limiter (real sleep), where every process would wait too.
    assert redis_conn.get("handoff:{hubspot-ratelimit}:pause-until") is not None
    assert second["at"] - first["at"] >= 900
