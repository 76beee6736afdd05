"""Fixtures for the intake tests: a Celery app and intake apps over the test Redis."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery import Celery
from flask import Flask
from flask.testing import FlaskClient
from intake_support import RULES, make_settings

from handoff_worker.celery_app import create_celery
from handoff_worker.intake.app import create_app
from handoff_worker.testing import free_port


@pytest.fixture
def celery_app(redis_url: str) -> Iterator[Celery]:
    app = create_celery(make_settings(redis_url))
    # kombu keeps connection pools per broker URL process-wide: closing them here would close
    # them for the next test too, so the app is simply dropped.
    yield app


@pytest.fixture
def make_app(redis_url: str, celery_app: Celery) -> Iterator[Any]:
    def build(**overrides: Any) -> Flask:
        return create_app(make_settings(redis_url, **overrides), rules=RULES, celery_app=celery_app)

    yield build


@pytest.fixture
def client(make_app: Any) -> FlaskClient:
    return make_app().test_client()


@pytest.fixture
def throwaway_redis() -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    server_bin = shutil.which("redis-server")
    if server_bin is None:
        pytest.fail(
            "redis-server is not installed; the Redis-down test needs it (apt-get install redis-server)"
        )
    port = free_port()
    process = subprocess.Popen(
        [server_bin, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    probe = redis.Redis.from_url(url, socket_connect_timeout=0.2)
    for _ in range(100):
        try:
            if probe.ping():
                break
        except redis.RedisError:
            time.sleep(0.05)
    yield process, url
    if process.poll() is None:
        process.kill()
    process.wait(timeout=5)
