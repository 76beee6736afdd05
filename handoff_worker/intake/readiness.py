"""What `/readyz` says: whether this web process can take webhooks now, and what is missing if not.

Each check reuses a connection the intake already holds (its Redis client and its publisher's), so
a load balancer probing every second opens no new connection. The durability of the Redis that
holds the ledger is reported as a warning (it does not make the process unready) and checked at
most once a minute, since it only changes when someone reconfigures Redis.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

import redis

from handoff_worker.settings import Settings
from handoff_worker.startup import WEB_REQUIRES, durability_warnings, missing_settings

DURABILITY_CHECK_SECONDS = 60.0


class Pingable(Protocol):
    def ping(self) -> bool: ...


class Readiness:
    def __init__(
        self, settings: Settings, redis_conn: redis.Redis, publisher: Pingable, *, rules_loaded: bool
    ) -> None:
        self.settings = settings
        self.redis = redis_conn
        self.publisher = publisher
        self.rules_loaded = rules_loaded
        self._durability: tuple[float, list[str]] | None = None
        self._lock = threading.Lock()

    def checks(self) -> tuple[bool, dict[str, str]]:
        """(ready, check name -> "ok..." / "failed: ..." / "missing: ..." / "warning: ...")."""
        checks: dict[str, str] = {}
        missing = missing_settings(self.settings, WEB_REQUIRES)
        checks["settings"] = (
            f"missing: {', '.join(missing)} (set it in the environment or .env)" if missing else "ok"
        )
        try:
            self.redis.ping()
            checks["redis"] = "ok"
        except redis.RedisError as exc:
            checks["redis"] = f"failed: {type(exc).__name__} (check REDIS_URL)"
        try:
            self.publisher.ping()
            checks["broker"] = "ok"
        except Exception as exc:  # any failure means "not ready"; the kind is reported
            checks["broker"] = f"failed: {type(exc).__name__} (check REDIS_URL)"
        checks["config"] = "ok" if self.rules_loaded else "ok (default rules, no HANDOFF_CONFIG loaded)"
        ready = all(not value.startswith(("failed", "missing")) for value in checks.values())
        if checks["redis"] == "ok":
            warnings = self._durability_warnings()
            checks["durability"] = "warning: " + "; ".join(warnings) if warnings else "ok"
        return ready, checks

    def _durability_warnings(self) -> list[str]:
        with self._lock:
            now = time.monotonic()
            if self._durability is None or now - self._durability[0] > DURABILITY_CHECK_SECONDS:
                self._durability = (now, durability_warnings(self.redis))
            return self._durability[1]
