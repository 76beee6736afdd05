"""Helpers for the ops tests: the environment they build and seed data."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis

from handoff_worker.domain.nurture import NurtureRules
from handoff_worker.hubspot.gateway import SdkGateway, build_gateway
from handoff_worker.nurture_config import load_rules
from handoff_worker.sandbox.testing import SandboxServer
from handoff_worker.settings import Settings
from handoff_worker.wiring import Wiring, build_wiring

# Our own rules file: its workflow and list ids are the sandbox default seed's.
NURTURE_YAML = Path(__file__).with_name("nurture-ops.yaml")
# Every seeded timestamp is relative to this, so windows in tests are exact.
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@dataclass
class OpsEnv:
    server: SandboxServer
    settings: Settings
    redis: redis.Redis
    gateway: SdkGateway
    rules: NurtureRules

    def wiring(self) -> Wiring:
        return build_wiring(self.settings)

    def env(self) -> dict[str, str]:
        """The environment a CLI run or a worker process needs to reach this sandbox and Redis."""
        return {
            "HUBSPOT_ACCESS_TOKEN": "pat-test-ops",
            "HUBSPOT_BASE_URL": self.server.url,
            "REDIS_URL": self.settings.redis_url,
            "HANDOFF_CONFIG": str(NURTURE_YAML),
            "HUBSPOT_SEARCH_RATE_LIMIT": str(self.settings.search_rate_limit),
            "HUBSPOT_RATE_LIMIT": str(self.settings.rate_limit),
        }


def build_env(server: SandboxServer, redis_url: str, **overrides: str) -> OpsEnv:
    environ = {
        "HUBSPOT_ACCESS_TOKEN": "pat-test-ops",
        "HUBSPOT_BASE_URL": server.url,
        "REDIS_URL": redis_url,
        "HANDOFF_CONFIG": str(NURTURE_YAML),
        **overrides,
    }
    settings = Settings.from_env(environ, dotenv_path=None)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    return OpsEnv(server, settings, client, build_gateway(settings, client), load_rules(NURTURE_YAML))


def lost_deal(deal_id: int, stamp: datetime, **properties: Any) -> dict[str, Any]:
    return {
        "id": str(deal_id),
        "properties": {
            "dealname": f"Deal {deal_id}",
            "pipeline": "default",
            "dealstage": "closedlost",
            "hs_lastmodifieddate": str(ms(stamp)),
            **properties,
        },
    }


class CollectingSink:
    """A destination that keeps the ids it is given, for walks too large to hand off for real."""

    def __init__(self) -> None:
        self.deals: list[str] = []
        self.contacts: list[str] = []

    def deal(self, deal_id: str) -> bool:
        self.deals.append(deal_id)
        return True

    def contact(self, contact_id: str) -> bool:
        self.contacts.append(contact_id)
        return True


def seed_lost_deal(
    env: OpsEnv, deal_id: str, reason: str | None, contacts: dict[str, str], *, stage: str = "closedlost"
) -> None:
    """A deal already lost (no webhook sent: the sandbox has no webhook target) and its contacts,
    contact id -> lifecycle stage. Timestamps are the sandbox's now."""
    properties = {"dealname": f"Deal {deal_id}", "pipeline": "default", "dealstage": stage}
    if reason is not None:
        properties["closed_lost_reason"] = reason
    env.server.control.seed(
        {
            "deals": [{"id": deal_id, "properties": {**properties, "hubspot_owner_id": "7001"}}],
            "contacts": [
                {
                    "id": cid,
                    "properties": {"email": f"c{cid}@example.com", "lifecyclestage": stage_name},
                }
                for cid, stage_name in contacts.items()
            ],
            "associations": [{"deal": deal_id, "contact": cid} for cid in contacts],
        }
    )


def recent_window() -> tuple[datetime, datetime]:
    now = datetime.now(UTC)
    return now - timedelta(hours=1), now + timedelta(minutes=1)
