"""Fixtures for the intake tests: a Celery app and intake apps over the test Redis."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery
from flask import Flask
from flask.testing import FlaskClient
from intake_support import RULES, make_settings

from handoff_worker.celery_app import create_celery
from handoff_worker.intake.app import create_app


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
