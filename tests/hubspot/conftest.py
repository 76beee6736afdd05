"""A sandbox (the HubSpot stand-in) over HTTP, and gateways pointed at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from gateway_fixtures import TOKEN, gateway_seed, settings_for

from handoff_worker.hubspot.gateway import SdkGateway, build_gateway
from handoff_worker.hubspot.retry import instant_waits
from handoff_worker.sandbox.testing import SandboxServer


@pytest.fixture(scope="session")
def hub_server() -> Iterator[SandboxServer]:
    server = SandboxServer.start(seed=None, access_token=TOKEN, rate_limit="100000/10s")
    yield server
    server.stop()


@pytest.fixture
def hub(hub_server: SandboxServer) -> SandboxServer:
    """The sandbox, reset to `gateway_seed()` with a generous rate limit and no faults."""
    hub_server.accept_connections()  # in case a test ended while connections were refused
    hub_server.control.configure(rate_limit="100000/10s", daily_limit=500_000, search_per_second=1000)
    hub_server.control.reset(gateway_seed())
    return hub_server


@pytest.fixture
def gateway(hub: SandboxServer, redis_url: str) -> Iterator[SdkGateway]:
    """A gateway on the sandbox and the shared limiter, with retry waits made instant."""
    connection = redis.Redis.from_url(redis_url)
    with instant_waits():
        yield build_gateway(settings_for(hub.url, REDIS_URL=redis_url), connection)
    connection.close()
