"""Deal pipelines, cached in Redis so a handoff does not spend a call on them.

Refreshed when older than a few minutes, and at once when a deal sits in a stage id the cache
does not know (a stage added since the last read).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict

import redis

from handoff_worker.domain.models import Pipeline, Stage
from handoff_worker.domain.nurture import DealRules
from handoff_worker.domain.rules import StageCatalog, stage_catalog
from handoff_worker.hubspot.protocol import HubSpotGateway
from handoff_worker.state import KEY_PREFIX

PIPELINES_KEY = f"{KEY_PREFIX}pipelines:deals"
PIPELINES_MAX_AGE_SECONDS = 300.0
# A forced refresh within this long of the last read is skipped: a deal stuck in a stage id that
# no pipeline lists must not cost every handoff an extra call.
MIN_REFRESH_INTERVAL_SECONDS = 30.0


class PipelineCache:
    def __init__(
        self,
        client: redis.Redis,
        gateway: HubSpotGateway,
        *,
        max_age: float = PIPELINES_MAX_AGE_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.gateway = gateway
        self.max_age = max_age
        self.clock = clock

    def catalog(self, deal_rules: DealRules, *, refresh: bool = False, eager: bool = True) -> StageCatalog:
        """`refresh`: re-read unless just read (`eager`: even then, for the deal being handed off)."""
        max_age = (0.0 if eager else MIN_REFRESH_INTERVAL_SECONDS) if refresh else self.max_age
        pipelines = self._cached(max_age)
        if pipelines is None:
            pipelines = self.gateway.deal_pipelines()
            payload = {"fetched_at": self.clock(), "pipelines": [asdict(p) for p in pipelines]}
            self.client.set(PIPELINES_KEY, json.dumps(payload))
        return stage_catalog(pipelines, deal_rules)

    def _cached(self, max_age: float) -> list[Pipeline] | None:
        raw = self.client.get(PIPELINES_KEY)
        if not raw:
            return None
        payload = json.loads(str(raw))
        if self.clock() - float(payload["fetched_at"]) > max_age:
            return None
        return [
            Pipeline(p["id"], p["label"], tuple(Stage(**s) for s in p["stages"]))
            for p in payload["pipelines"]
        ]
