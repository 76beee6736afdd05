"""Where the pieces meet: settings -> Redis, the gateway, the nurture rules and the engine.

The Celery tasks, the ops commands, the scheduled sweep and the demo all build them here, so every
process shares the account's rate budget (the gateway's limiter in Redis) and reads the same rules
the same way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import redis

from handoff_worker.domain.nurture import NurtureRules
from handoff_worker.handoff.engine import HandoffEngine
from handoff_worker.handoff.ledger import Ledger
from handoff_worker.handoff.resync import HandoffSink, LedgerDoneCheck, Resync, WaitingForReason
from handoff_worker.hubspot.protocol import HubSpotGateway
from handoff_worker.nurture_config import RulesStore
from handoff_worker.settings import Settings
from handoff_worker.state import KEY_PREFIX

log = logging.getLogger(__name__)


class RedisLastGood:
    """Keeps the text of the last valid nurture file in Redis, so a process that starts while the
    file is broken runs on the last good rules instead of failing every handoff."""

    def __init__(self, client: redis.Redis, config_path: Path | str) -> None:
        self.client = client
        self.key = f"{KEY_PREFIX}rules:last-good:{config_path}"

    def load(self) -> str | None:
        try:
            text = self.client.get(self.key)
        except redis.RedisError as exc:
            log.warning("could not read the last good nurture rules from Redis: %s", exc)
            return None
        return None if text is None else str(text)

    def save(self, text: str) -> None:
        try:
            self.client.set(self.key, text)
        except redis.RedisError as exc:
            log.warning("could not keep the nurture rules in Redis as the last good ones: %s", exc)


@dataclass
class Wiring:
    settings: Settings
    redis: redis.Redis
    gateway: HubSpotGateway
    rules_store: RulesStore
    engine: HandoffEngine

    @property
    def rules(self) -> NurtureRules:
        """The rules in force now (a saved change is picked up within the store's interval)."""
        return self.rules_store.current()

    def resync(self, *, inline: bool) -> Resync:
        """A sweep that runs handoffs here (`inline`) or queues them for the workers."""
        sink: HandoffSink
        if inline:
            from handoff_worker.handoff.commands import InlineSink

            sink = InlineSink(self.engine)
        else:
            from handoff_worker.beat import CelerySink
            from handoff_worker.celery_app import create_celery

            sink = CelerySink(create_celery(self.settings))
        ledger = Ledger(self.redis)
        rules = self.rules
        return Resync(
            self.gateway,
            rules,
            sink,
            done=LedgerDoneCheck(ledger),
            waiting=WaitingForReason(ledger, self.gateway, rules),
        )


def build_wiring(settings: Settings, client: redis.Redis | None = None) -> Wiring:
    """Everything a handoff needs, from settings. `client` replaces the Redis of REDIS_URL (the
    demo's in-process stand-in)."""
    from handoff_worker.hubspot.gateway import build_gateway
    from handoff_worker.state import redis_client

    client = client if client is not None else redis_client(settings)
    gateway = build_gateway(settings, client)
    store = RulesStore(settings.handoff_config, last_good=RedisLastGood(client, settings.handoff_config))
    engine = HandoffEngine(gateway, client, store.current_with_version, dry_run=settings.dry_run)
    return Wiring(settings, client, gateway, store, engine)
