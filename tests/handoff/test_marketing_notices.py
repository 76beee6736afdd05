"""Telling marketing once per episode: the engine over the sandbox (real SDK over HTTP, real
Redis), messages to a real HTTP receiver on 127.0.0.1 through the real webhook poster."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis

from handoff_worker.celery_app import DIGEST_BEAT_ENTRY, RESYNC_QUEUE, TASK_MARKETING_DIGEST, beat_schedule
from handoff_worker.chat_webhook import WebhookPoster
from handoff_worker.errors import MessageNotSent
from handoff_worker.handoff.engine import HandoffEngine
from handoff_worker.handoff.lock import LockBusyError
from handoff_worker.handoff.notices import send_digests
from handoff_worker.hubspot.gateway import build_gateway
from handoff_worker.nurture_config import RulesStore
from handoff_worker.sandbox.testing import SandboxServer
from handoff_worker.settings import Settings

WEBHOOK_ENV = "MARKETING_WEBHOOK_URL"
HUB_ID = "424242"
MARKETING_OWNER = "7002"
RULES = """\
version: 1
marketing_notices:
  hub_id: 424242
  webhook_url_env: MARKETING_WEBHOOK_URL
  daily_digest: {digest}
reasons:
  Pricing:
    nurture:
      - workflow: 5102
    tell_marketing:
      message: true
      task_owner: 7002
  Not Interested:
    nurture:
      - list: 702
"""
# After the sandbox's records are made (it stamps them with the real time): a deal created after
# an episode started would be sales taking the contact back.
DAY = datetime.now(UTC) + timedelta(minutes=5)
NEXT_DAY = DAY.date() + timedelta(days=1)


class Receiver:
    """An incoming webhook as Slack or Teams runs one: records each POST, answers `statuses` in
    turn (then 200)."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                receiver.bodies.append(json.loads(self.rfile.read(length)))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok" if status == 200 else b"no_service")

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T000/B000/secret-part"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def texts(self) -> list[str]:
        return [str(body["text"]) for body in self.bodies]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.close()


@pytest.fixture
def engine_with(
    tmp_path: Path, settings_for: Callable[..., Settings], redis_conn: redis.Redis, receiver: Receiver
) -> Callable[..., HandoffEngine]:
    def build(*, digest: bool = False, clock: datetime = DAY) -> HandoffEngine:
        path = tmp_path / "notices.yaml"
        path.write_text(RULES.format(digest=str(digest).lower()))
        settings = settings_for(HANDOFF_CONFIG=str(path))
        return HandoffEngine(
            build_gateway(settings, redis_conn),
            redis_conn,
            RulesStore(settings.handoff_config).current_with_version,
            clock=lambda: clock,
            poster=WebhookPoster(timeout_seconds=2, wait_seconds=0),
            env={WEBHOOK_ENV: receiver.url}.get,
        )

    return build


def contact(hub: SandboxServer, first: str, last: str) -> str:
    properties = {
        "lifecyclestage": "salesqualifiedlead",
        "email": f"{first.lower()}@example.com",
        "firstname": first,
        "lastname": last,
    }
    return str(hub.control.rep_create("contacts", properties)["id"])


def lost_deal(hub: SandboxServer, contact_ids: list[str], reason: str = "Pricing") -> str:
    deal = hub.control.rep_create(
        "deals", {"dealname": "Deal", "pipeline": "default", "dealstage": "qualifiedtobuy"}
    )
    for contact_id in contact_ids:
        hub.control.associate(deal["id"], contact_id)
    hub.control.lose_deal(str(deal["id"]), reason)
    return str(deal["id"])


def marketing_tasks(hub: SandboxServer, contact_id: str) -> list[dict[str, Any]]:
    tasks = [
        hub.control.object("tasks", t) for t in hub.control.associated_ids("contacts", contact_id, "tasks")
    ]
    return [t for t in tasks if t["properties"].get("hubspot_owner_id") == MARKETING_OWNER]


def test_two_lost_deals_of_one_contact_tell_marketing_once(
    hub: SandboxServer, engine_with: Callable[..., HandoffEngine], receiver: Receiver
) -> None:
    ada = contact(hub, "Ada", "Byron")
    first, second = lost_deal(hub, [ada]), lost_deal(hub, [ada])
    engine = engine_with()
    assert engine.handoff_deal(first).outcome == "handed_off"
    assert engine.handoff_deal(second).outcome == "handed_off"
    assert receiver.texts == [
        f"Handed to marketing: Ada Byron (Pricing): https://app.hubspot.com/contacts/{HUB_ID}/contact/{ada}"
    ]
    assert "ada@example.com" not in json.dumps(receiver.bodies)
    (task,) = marketing_tasks(hub, ada)
    assert task["properties"]["hs_task_subject"] == "Handed to marketing: Pricing"


def test_a_retried_handoff_sends_no_second_message(
    hub: SandboxServer,
    engine_with: Callable[..., HandoffEngine],
    receiver: Receiver,
    redis_conn: redis.Redis,
) -> None:
    ada = contact(hub, "Ada", "Byron")
    deal = lost_deal(hub, [ada])
    engine = engine_with()
    run = engine.handoff_deal(deal, "webhook")
    assert run.outcome == "handed_off"
    # The worker died after telling marketing, before its steps were recorded: the retry of the
    # same loss does every step again (the journey already holds the episode).
    redis_conn.delete(f"handoff:ledger:{run.loss_id}")
    assert engine.handoff_deal(deal, "retry").outcome == "handed_off"
    # HubSpot delivers the webhook again, and the sweep finds the deal too.
    assert engine.handoff_deal(deal, "webhook").outcome == "handed_off"
    assert engine.handoff_deal(deal, "resync").outcome == "handed_off"
    assert len(receiver.bodies) == 1 and len(marketing_tasks(hub, ada)) == 1


def test_two_deals_of_one_contact_lost_at_once_tell_marketing_once(
    hub: SandboxServer, engine_with: Callable[..., HandoffEngine], receiver: Receiver
) -> None:
    ada = contact(hub, "Ada", "Byron")
    deals = [lost_deal(hub, [ada]) for _ in range(2)]
    outcomes: list[str] = []

    def hand_off(deal_id: str) -> None:
        engine = engine_with()
        while True:
            try:
                outcomes.append(engine.handoff_deal(deal_id).outcome)
                return
            except LockBusyError:  # what Celery retries
                continue

    threads = [threading.Thread(target=hand_off, args=(d,)) for d in deals]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert outcomes == ["handed_off", "handed_off"]
    assert len(receiver.bodies) == 1 and len(marketing_tasks(hub, ada)) == 1


def test_a_reason_without_tell_marketing_tells_nobody(
    hub: SandboxServer, engine_with: Callable[..., HandoffEngine], receiver: Receiver
) -> None:
    ada = contact(hub, "Ada", "Byron")
    assert engine_with().handoff_deal(lost_deal(hub, [ada], "Not Interested")).outcome == "handed_off"
    assert receiver.bodies == [] and marketing_tasks(hub, ada) == []


def test_a_webhook_that_fails_twice_gets_the_message_on_the_third_try(
    hub: SandboxServer, engine_with: Callable[..., HandoffEngine], receiver: Receiver
) -> None:
    receiver.statuses = [500, 503]
    ada = contact(hub, "Ada", "Byron")
    assert engine_with().handoff_deal(lost_deal(hub, [ada])).outcome == "handed_off"
    assert len(receiver.bodies) == 3 and receiver.texts[0] == receiver.texts[2]


def test_a_webhook_that_keeps_failing_is_logged_without_its_url_and_the_handoff_goes_on(
    hub: SandboxServer,
    engine_with: Callable[..., HandoffEngine],
    receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver.statuses = [500, 500, 500, 500]
    ada = contact(hub, "Ada", "Byron")
    deal = lost_deal(hub, [ada])
    with caplog.at_level(logging.WARNING):
        run = engine_with().handoff_deal(deal)
    assert run.outcome == "handed_off"
    assert len(receiver.bodies) == 3  # bounded: three attempts, then given up
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert f"message to marketing for contact {ada} (episode 1) not sent: the webhook answered 500" in logged
    assert "secret-part" not in logged and "Ada" not in logged


def test_a_refused_message_is_not_retried(receiver: Receiver) -> None:
    receiver.statuses = [404]
    with pytest.raises(MessageNotSent, match="refused the message: 404 'no_service'"):
        WebhookPoster(wait_seconds=0).post(receiver.url, "hello")
    assert len(receiver.bodies) == 1


def test_daily_digest_lists_the_days_episodes_once_the_day_is_over(
    hub: SandboxServer,
    engine_with: Callable[..., HandoffEngine],
    receiver: Receiver,
    redis_conn: redis.Redis,
) -> None:
    ada, bob = contact(hub, "Ada", "Byron"), contact(hub, "Bob", "Stone")
    engine = engine_with(digest=True)
    engine.handoff_deal(lost_deal(hub, [ada]))
    engine.handoff_deal(lost_deal(hub, [bob]))
    engine.handoff_deal(lost_deal(hub, [ada]))  # same episode: not listed twice
    assert receiver.bodies == []
    poster = WebhookPoster(wait_seconds=0)
    env = {WEBHOOK_ENV: receiver.url}.get
    notices = engine.rules_source()[0].marketing_notices
    assert send_digests(redis_conn, poster, notices, env, today=DAY.date()) == []  # the day still runs
    assert send_digests(redis_conn, poster, notices, env, today=NEXT_DAY) == [DAY.date()]
    link = f"https://app.hubspot.com/contacts/{HUB_ID}/contact/"
    assert receiver.texts == [
        f"Handed to marketing on {DAY.date()}: 2 contacts\n"
        f"- Ada Byron (Pricing): {link}{ada}\n"
        f"- Bob Stone (Pricing): {link}{bob}"
    ]
    assert send_digests(redis_conn, poster, notices, env, today=NEXT_DAY + timedelta(days=1)) == []
    assert len(receiver.bodies) == 1


def test_a_digest_whose_post_fails_is_sent_by_the_next_run(
    hub: SandboxServer, engine_with: Callable[..., HandoffEngine], receiver: Receiver, redis_conn: redis.Redis
) -> None:
    ada = contact(hub, "Ada", "Byron")
    engine = engine_with(digest=True)
    engine.handoff_deal(lost_deal(hub, [ada]))
    notices = engine.rules_source()[0].marketing_notices
    env = {WEBHOOK_ENV: receiver.url}.get
    receiver.statuses = [500, 500, 500]
    poster = WebhookPoster(wait_seconds=0)
    assert send_digests(redis_conn, poster, notices, env, today=NEXT_DAY) == []
    assert send_digests(redis_conn, poster, notices, env, today=NEXT_DAY) == [DAY.date()]
    assert receiver.texts[-1].startswith(f"Handed to marketing on {DAY.date()}: 1 contact\n- Ada Byron")
    assert len(receiver.bodies) == 4


def test_the_digest_is_scheduled_hourly_on_the_resync_queue(settings_for: Callable[..., Settings]) -> None:
    entry = beat_schedule(settings_for())[DIGEST_BEAT_ENTRY]
    assert entry["task"] == TASK_MARKETING_DIGEST
    assert entry["schedule"] == timedelta(hours=1)
    assert entry["options"] == {"queue": RESYNC_QUEUE, "expires": 3600.0}
