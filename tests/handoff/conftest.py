"""Handoff tests: the engine against the sandbox over HTTP, with the real SDK gateway and Redis."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from worker_support import Worker

from handoff_worker.celery_app import create_celery
from handoff_worker.handoff.engine import HandoffEngine
from handoff_worker.hubspot.gateway import build_gateway
from handoff_worker.hubspot.retry import set_instant_waits
from handoff_worker.nurture_config import RulesStore
from handoff_worker.sandbox.testing import SandboxServer
from handoff_worker.settings import Settings
from handoff_worker.testing import NURTURE_TRACK

# The sandbox's default seed: workflows 5102 (Pricing), 5103 (re-enrollable), 5104; static list
# 702, dynamic list 703. Workflow 5999 and property `no_such_property` do not exist.
TEST_RULES_YAML = """\
version: 1
deals:
  reason_property: closed_lost_reason
owner_tasks:
  sla_hours: 24
  subject: "Add a lost reason to {deal_name}"
reasons:
  Pricing:
    nurture:
      - workflow: 5102
        name: Pricing nurture
  Feature Missing:
    nurture:
      - workflow: 5104
        name: Feature nurture
      - property: {name: nurture_track, value: feature_missing}
        name: Feature track
      - list: 702
        name: Recycled list
  Not Interested:
    nurture:
      - list: 702
        name: Recycled list
  Competitor:
    recycle: false
  Not a Fit - Never Will Be:
    recycle: false
    lifecycle_stage: other
  Not Ready:
    nurture:
      - workflow: 5999
        name: Deleted workflow
      - list: 702
        name: Recycled list
  Not a Prospect:
    nurture:
      - list: 703
        name: Dynamic list
  Can't Fulfill Their Needs:
    nurture:
      - property: {name: no_such_property, value: x}
        name: Broken track
"""


@pytest.fixture(autouse=True)
def _instant_gateway_retries() -> Any:
    set_instant_waits(True)
    yield
    set_instant_waits(False)


@pytest.fixture
def rules_path(tmp_path: Path) -> Path:
    path = tmp_path / "nurture.yaml"
    path.write_text(TEST_RULES_YAML)
    return path


@pytest.fixture
def hub(sandbox: SandboxServer) -> SandboxServer:
    """The sandbox with the property the property nurture writes."""
    sandbox.control.seed({"properties": {"contacts": [NURTURE_TRACK]}})
    return sandbox


@pytest.fixture
def settings_for(redis_url: str, hub: SandboxServer, rules_path: Path) -> Callable[..., Settings]:
    def build(**extra: str) -> Settings:
        env = {
            "HUBSPOT_BASE_URL": hub.url,
            "HUBSPOT_ACCESS_TOKEN": "pat-test-token",
            "REDIS_URL": redis_url,
            "HANDOFF_CONFIG": str(rules_path),
            "HUBSPOT_RATE_LIMIT": "1000/1s",
            **extra,
        }
        return Settings.from_env(env, dotenv_path=None)

    return build


@pytest.fixture
def engine_for(
    settings_for: Callable[..., Settings], redis_conn: redis.Redis
) -> Callable[..., HandoffEngine]:
    def build(*, dry_run: bool = False, lock_ttl: float = 15.0) -> HandoffEngine:
        settings = settings_for()
        store = RulesStore(settings.handoff_config)
        gateway = build_gateway(settings, redis_conn)
        return HandoffEngine(
            gateway, redis_conn, store.current_with_version, dry_run=dry_run, lock_ttl=lock_ttl
        )

    return build


@pytest.fixture
def engine(engine_for: Callable[..., HandoffEngine]) -> HandoffEngine:
    return engine_for()


@pytest.fixture
def worker(settings_for: Callable[..., Settings], tmp_path: Path) -> Iterator[Worker]:
    """A real `celery worker` process on the test's Redis and sandbox, stopped after the test."""
    started = Worker(settings_for(), tmp_path / "worker.log")
    yield started
    started.stop()


@pytest.fixture
def queue(settings_for: Callable[..., Settings]) -> Iterator[Celery]:
    """A Celery client to send tasks to the test's worker."""
    app = create_celery(settings_for())
    yield app
    app.close()
