"""Re-engagement by webhook, end to end: a rep acts in the sandbox, which sends HubSpot's signed
webhooks (deal creation, association change, contact property changes) to the real intake over
HTTP; the intake queues work by task name for a real Celery worker process, which re-reads HubSpot
and takes the contact out of its nurture. Asserted on what HubSpot (the sandbox) shows."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from werkzeug.serving import make_server
from worker_support import Worker

from handoff_worker.domain.journey import JourneyState
from handoff_worker.handoff.journeys import JourneyStore
from handoff_worker.intake.app import create_app
from handoff_worker.nurture_config import RulesStore
from handoff_worker.sandbox.testing import SandboxServer
from handoff_worker.sandbox.webhooks import DEFAULT_CLIENT_SECRET
from handoff_worker.settings import Settings
from handoff_worker.testing import wait_until

pytestmark = pytest.mark.slow

APP_ID = "424242"


@pytest.fixture
def wired_settings(settings_for: Callable[..., Settings]) -> Settings:
    return settings_for(
        HUBSPOT_CLIENT_SECRET=DEFAULT_CLIENT_SECRET,
        HUBSPOT_APP_ID=APP_ID,
        HUBSPOT_SIGNATURE_VERSIONS="v3",
    )


@pytest.fixture
def worker(wired_settings: Settings, tmp_path: Path) -> Iterator[Worker]:
    started = Worker(
        wired_settings,
        tmp_path / "worker.log",
        env={"HUBSPOT_CLIENT_SECRET": DEFAULT_CLIENT_SECRET, "HUBSPOT_APP_ID": APP_ID},
    )
    yield started
    started.stop()


@pytest.fixture
def intake(wired_settings: Settings, redis_conn: redis.Redis, hub: SandboxServer) -> Iterator[str]:
    store = RulesStore(wired_settings.handoff_config)
    server = make_server("127.0.0.1", 0, create_app(wired_settings, rules=store.current), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}/webhooks/hubspot"
    hub.control.configure(webhook_url=url)
    yield url
    hub.control.configure(webhook_url=None)
    server.shutdown()


def nurtured(hub: SandboxServer, contact_id: str) -> bool:
    """In the Pricing workflow, as HubSpot's enrollments show it."""
    return contact_id in hub.control.enrollments()["5102"]["contactIds"]


def came_back(redis_conn: redis.Redis, contact_id: str) -> bool:
    journey = JourneyStore(redis_conn).get(contact_id)
    return journey is not None and journey.episode.state is JourneyState.CAME_BACK


TRIGGERS: dict[str, Callable[[Any], object]] = {
    "new open deal": lambda c: c.associate(
        c.rep_create("deals", {"dealname": "Again", "pipeline": "default", "dealstage": "qualifiedtobuy"})[
            "id"
        ],
        "3001",
    ),
    "reopened deal": lambda c: c.rep_update("deals", "2001", {"dealstage": "qualifiedtobuy"}),
    "lifecycle stage": lambda c: c.rep_update("contacts", "3001", {"lifecyclestage": "salesqualifiedlead"}),
    "lead status": lambda c: c.rep_update("contacts", "3001", {"hs_lead_status": "CONNECTED"}),
}


@pytest.mark.parametrize("trigger", sorted(TRIGGERS))
def test_each_trigger_by_webhook_stops_the_nurture(
    hub: SandboxServer, redis_conn: redis.Redis, intake: str, worker: Worker, trigger: str
) -> None:
    hub.control.lose_deal("2001", "Pricing")  # its webhook recycles 3001 and 3002
    wait_until(lambda: nurtured(hub, "3001"), timeout=30, what="3001 in the Pricing nurture")
    TRIGGERS[trigger](hub.control)
    wait_until(lambda: came_back(redis_conn, "3001"), timeout=30, what=f"3001 back with sales ({trigger})")
    assert not nurtured(hub, "3001"), worker.output()[-3000:]
    # 3002 shares the reopened deal only: otherwise marketing keeps it.
    assert nurtured(hub, "3002") is (trigger != "reopened deal")
