"""Only one sweep at a time across every host: a Redis lock with a token, renewed while the sweep
runs; a sweep that loses it stops before it sends anything more."""

from __future__ import annotations

from types import TracebackType

import redis

from handoff_worker.handoff.lock import RenewedLock
from handoff_worker.handoff.resync.errors import ResyncError
from handoff_worker.state import KEY_PREFIX

LOCK_KEY = f"{KEY_PREFIX}resync:lock"


class SweepLock(RenewedLock):
    """One sweep at a time across hosts; a crashed sweep frees it within `ttl_seconds`. If renewal
    fails the sweep sees `lost` and stops."""

    def __init__(self, client: redis.Redis, *, key: str = LOCK_KEY, ttl_seconds: float = 60.0) -> None:
        super().__init__(client, key, ttl_seconds=ttl_seconds)

    def check(self) -> None:
        """Raise if the lock was lost, so a sweep never runs beside another one."""
        if self.lost:
            raise ResyncError(
                f"the resync lock {self.key} expired or was taken while this sweep ran; stopped so "
                "two sweeps never work at once. The next sweep picks up from the watermark."
            )

    def __enter__(self) -> SweepLock:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
