"""Shared test set-up: a real Redis for every test.

Tests use the Redis at `REDIS_URL` (default `redis://127.0.0.1:6379/15`) and FLUSH that database,
so never point it at a Redis that holds anything you want to keep. When nothing answers there, a
throw-away `redis-server` is started on that port if one is installed; otherwise the run stops with
a message saying how to get one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import pytest
import redis

if TYPE_CHECKING:
    from handoff_worker.sandbox.testing import SandboxServer

TEST_REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
os.environ["REDIS_URL"] = TEST_REDIS_URL
_started_redis: subprocess.Popen[bytes] | None = None


def _answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping())
    except redis.RedisError:
        return False


def pytest_sessionstart(session: pytest.Session) -> None:
    global _started_redis
    if _answers(TEST_REDIS_URL):
        return
    parsed = urlparse(TEST_REDIS_URL)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 6379
    server = shutil.which("redis-server")
    if server is None or host not in {"127.0.0.1", "localhost", "::1"}:
        pytest.exit(
            f"No Redis answers at REDIS_URL={TEST_REDIS_URL} and none can be started here. "
            "The tests need a real Redis: install one (Debian/Ubuntu: `apt-get install redis-server`; "
            "macOS: `brew install redis`) or point REDIS_URL at a Redis whose data may be flushed.",
            returncode=4,
        )
    _started_redis = subprocess.Popen(
        [server, "--port", str(port), "--bind", host, "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not _answers(TEST_REDIS_URL):
        if time.monotonic() > deadline or _started_redis.poll() is not None:
            pytest.exit(f"redis-server did not start on {host}:{port}", returncode=4)
        time.sleep(0.05)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _started_redis is not None:
        _started_redis.terminate()
        _started_redis.wait(timeout=10)


@pytest.fixture
def redis_url() -> Iterator[str]:
    """The test Redis, emptied before each test."""
    client = redis.Redis.from_url(TEST_REDIS_URL)
    client.flushdb()
    yield TEST_REDIS_URL
    client.close()


@pytest.fixture
def redis_conn(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


# ----- the HubSpot sandbox ------------------------------------------------------------------------

SANDBOX_TEST_RETRY_DELAYS = [0.05] * 9  # webhook retries in milliseconds, not hours, for tests


@pytest.fixture(scope="session")
def _sandbox_server() -> Iterator[SandboxServer]:
    from handoff_worker.sandbox.testing import SandboxServer

    server = SandboxServer.start(retry_delays=SANDBOX_TEST_RETRY_DELAYS)
    yield server
    server.stop()


@pytest.fixture
def sandbox(_sandbox_server: SandboxServer) -> SandboxServer:
    """A running HubSpot sandbox holding the default seed, reset before each test.

    One server serves the whole session; each test gets default settings (no webhook target,
    any bearer token, 100/10s, short webhook retries) and fresh data, logs and limits.
    Use `sandbox.url` as the SDK host and `sandbox.control` to seed, act as a rep and inspect.
    """
    from handoff_worker.sandbox.testing import SandboxServer
    from handoff_worker.sandbox.webhooks import DEFAULT_CLIENT_SECRET, DEFAULT_WATCHED

    assert isinstance(_sandbox_server, SandboxServer)
    _sandbox_server.accept_connections()  # in case a test ended while connections were refused
    _sandbox_server.control.configure(
        webhook_url=None,
        client_secret=DEFAULT_CLIENT_SECRET,
        app_id=424242,
        access_token=None,
        rate_limit="100/10s",
        daily_limit=500_000,
        search_per_second=5,
        retry_delays=SANDBOX_TEST_RETRY_DELAYS,
        watched_properties=DEFAULT_WATCHED,
    )
    _sandbox_server.control.reset("default")
    return _sandbox_server
