"""Ops tests run against the sandbox over HTTP, the real gateway (SDK) and a real Redis."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from ops_support import OpsEnv, build_env

from handoff_worker.sandbox.testing import SandboxServer


@pytest.fixture
def ops_sandbox() -> Iterator[SandboxServer]:
    server = SandboxServer.start()
    yield server
    server.stop()


@pytest.fixture
def ops(ops_sandbox: SandboxServer, redis_url: str) -> Iterator[OpsEnv]:
    env = build_env(ops_sandbox, redis_url)
    yield env
    env.redis.close()
