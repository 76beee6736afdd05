"""The composition root: settings -> Redis, the gateway, the nurture rules and the engine.

The Celery tasks, the scheduled sweep, the ops commands and the demo all get them here, so every
process shares the account's rate budget (the gateway's limiter in Redis) and reads the same rules
the same way. Nothing below this module imports it: what only an entry point knows (where a sweep
sends the records it finds) is passed in.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import redis
from dotenv import dotenv_values

from handoff_worker.domain.nurture import NurtureRules
from handoff_worker.handoff.engine import HandoffEngine
from handoff_worker.handoff.ledger import Ledger
from handoff_worker.handoff.notices import EnvLookup
from handoff_worker.handoff.resync import HandoffSink, LedgerDoneCheck, Resync, WaitingForReason
from handoff_worker.handoff.resync.came_back import CameBackRevisit
from handoff_worker.hubspot.protocol import HubSpotGateway
from handoff_worker.nurture_config.store import RedisLastGood, RulesStore
from handoff_worker.settings import Settings

log = logging.getLogger(__name__)


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

    def resync(self, sink: HandoffSink) -> Resync:
        """A sweep that gives each record it finds to `sink`: run here, or queued for the workers."""
        ledger = Ledger(self.redis)
        rules = self.rules
        return Resync(
            self.gateway,
            rules,
            sink,
            done=LedgerDoneCheck(ledger),
            waiting=WaitingForReason(ledger, self.gateway, rules),
            came_back=CameBackRevisit(self.redis, self.gateway, rules, self.engine.reengagement),
        )


def build_wiring(settings: Settings, client: redis.Redis | None = None) -> Wiring:
    """Everything a handoff needs, from settings. `client` replaces the Redis of REDIS_URL (the
    demo's in-process stand-in)."""
    from handoff_worker.chat_webhook import WebhookPoster
    from handoff_worker.hubspot.gateway import build_gateway
    from handoff_worker.state import redis_client

    client = client if client is not None else redis_client(settings)
    gateway = build_gateway(settings, client)
    store = RulesStore(settings.handoff_config, last_good=RedisLastGood(client, settings.handoff_config))
    engine = HandoffEngine(
        gateway,
        client,
        store.current_with_version,
        dry_run=settings.dry_run,
        poster=WebhookPoster(),
        env=secret_lookup(),
    )
    return Wiring(settings, client, gateway, store, engine)


def secret_lookup(dotenv_path: str = ".env") -> EnvLookup:
    """A secret the nurture YAML names by its variable (the marketing webhook's URL): from the
    environment, else from `.env`, as settings are read."""

    def lookup(name: str) -> str | None:
        value = os.environ.get(name)
        if value is None and Path(dotenv_path).is_file():
            value = dotenv_values(dotenv_path).get(name)
        return value

    return lookup


# The process's own wiring: each worker process (tasks and the scheduled sweep alike) builds it
# once, lazily, on its first use, after the fork, so no connection is shared between processes.
_installed: Wiring | None = None


def install_wiring(wired: Wiring | None) -> None:
    """Use this wiring instead of building one from the environment (the in-process demo)."""
    global _installed
    _installed = wired


def process_wiring() -> Wiring:
    """The wiring of this process: the installed one, else one built once from the environment."""
    return _installed or _wiring_from_env()


def reset_wiring() -> None:
    """Forget the wiring built so far: the next use builds it again from the environment."""
    install_wiring(None)
    _wiring_from_env.cache_clear()


@lru_cache(maxsize=1)
def _wiring_from_env() -> Wiring:
    return build_wiring(Settings.from_env(require=("HUBSPOT_ACCESS_TOKEN",)))
