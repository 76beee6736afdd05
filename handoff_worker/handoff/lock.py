"""A lock per deal or contact, so two workers never hand off the same record at once.

SET NX PX with a random token; a background thread extends it while the work runs; release and
extension only touch the key while it still holds OUR token (compare-and-delete in Lua), so a
worker whose lock expired can never delete the lock another worker took over since.
"""

from __future__ import annotations

import secrets
import threading
from types import TracebackType

import redis

from handoff_worker.errors import HandoffError
from handoff_worker.state import KEY_PREFIX

LOCK_TTL_SECONDS = 15.0

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


class LockBusyError(HandoffError):
    """Another worker is handing off this record right now; try again in a few seconds."""


def lock_key(kind: str, object_id: str) -> str:
    return f"{KEY_PREFIX}lock:{kind}:{object_id}"


class RecordLock:
    def __init__(
        self, client: redis.Redis, kind: str, object_id: str, *, ttl: float = LOCK_TTL_SECONDS
    ) -> None:
        self.client = client
        self.key = lock_key(kind, object_id)
        self.ttl_ms = int(ttl * 1000)
        self.token = secrets.token_hex(16)
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self.lost = False

    def __enter__(self) -> RecordLock:
        if not self.client.set(self.key, self.token, nx=True, px=self.ttl_ms):
            raise LockBusyError(f"{self.key} is held by another worker")
        self._renewer = threading.Thread(target=self._keep_alive, name=f"renew {self.key}", daemon=True)
        self._renewer.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=2)
        self.client.eval(_RELEASE, 1, self.key, self.token)

    def _keep_alive(self) -> None:
        while not self._stop.wait(self.ttl_ms / 3000):
            try:
                if not self.client.eval(_EXTEND, 1, self.key, self.token, self.ttl_ms):
                    self.lost = True
                    return
            except redis.RedisError:
                continue  # the next beat tries again; the TTL leaves room for one miss

    def ensure_held(self) -> None:
        """Called between phases: a worker that lost its lock stops before its next write."""
        if self.lost:
            raise LockBusyError(f"{self.key} expired while this worker held it; another may be running")
