"""A lock per deal or contact, so two workers never hand off the same record at once.

SET NX PX with a random token; a background thread extends it while the work runs; release and
extension only touch the key while it still holds OUR token (compare-and-delete in Lua), so a
worker whose lock expired can never delete the lock another worker took over since.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from types import TracebackType
from typing import Protocol

import redis

from handoff_worker.domain.models import RecordKind
from handoff_worker.errors import HandoffError
from handoff_worker.state import KEY_PREFIX

log = logging.getLogger(__name__)

LOCK_TTL_SECONDS = 15.0
RUNNING_MARK_SECONDS = 120.0

RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
EXTEND_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


class LockBusyError(HandoffError):
    """Another worker is handing off this record right now; try again in a few seconds."""


def lock_key(kind: RecordKind, object_id: str) -> str:
    return f"{KEY_PREFIX}lock:{kind}:{object_id}"


# Records being handed off now, scored by when their lock expires (epoch seconds): `running_count`
# answers "how many are running" in one command, without scanning the keyspace for lock keys. A
# crashed holder's entry stops counting when its lock would have expired.
RUNNING_INDEX = f"{KEY_PREFIX}lock:running"


def running_count(client: redis.Redis, *, now: float) -> int:
    pipe = client.pipeline(transaction=False)
    pipe.zremrangebyscore(RUNNING_INDEX, "-inf", now - 3600)
    pipe.zcount(RUNNING_INDEX, now, "+inf")
    return int(pipe.execute()[1])


class RenewedLock:
    """A Redis lock held by a random token: taken with SET NX PX, kept alive by a background thread
    while held, released only while it still holds our token. `lost` turns true when a renewal
    finds the key gone or taken over, so the holder can stop before its next write."""

    def __init__(self, client: redis.Redis, key: str, *, ttl_seconds: float) -> None:
        self.client = client
        self.key = key
        self.ttl_ms = int(ttl_seconds * 1000)
        self.token = secrets.token_hex(16)
        self.lost = False
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def acquire(self, *, wait_seconds: float = 0.0) -> bool:
        """Take the lock, waiting up to `wait_seconds` for its holder to let go."""
        deadline = time.monotonic() + wait_seconds
        while not self.client.set(self.key, self.token, nx=True, px=self.ttl_ms):
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(0.5, max(0.01, deadline - time.monotonic())))
        self._stop.clear()
        self._renewer = threading.Thread(target=self._keep_alive, name=f"renew {self.key}", daemon=True)
        self._renewer.start()
        return True

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=5)
        self.client.eval(RELEASE_SCRIPT, 1, self.key, self.token)

    def _keep_alive(self) -> None:
        while not self._stop.wait(self.ttl_ms / 3000):
            try:
                if not self.client.eval(EXTEND_SCRIPT, 1, self.key, self.token, self.ttl_ms):
                    self.lost = True
                    return
            except redis.RedisError:
                log.warning("could not renew the lock %s; trying again", self.key)


class RecordLock(RenewedLock):
    def __init__(
        self, client: redis.Redis, kind: RecordKind, object_id: str, *, ttl: float = LOCK_TTL_SECONDS
    ) -> None:
        super().__init__(client, lock_key(kind, object_id), ttl_seconds=ttl)
        self.kind, self.object_id = kind, object_id

    def __enter__(self) -> RecordLock:
        if not self.acquire():
            raise LockBusyError(f"{self.kind} {self.object_id} is being handed off by another worker")
        self._mark_running()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
        try:
            self.client.zrem(RUNNING_INDEX, f"{self.kind}:{self.object_id}")
        except redis.RedisError:
            log.warning("%s %s stays counted as running for a while", self.kind, self.object_id)

    def _mark_running(self) -> None:
        # Counted for `status` until a while past the lock's own expiry; the holder's renewals of the
        # lock do not touch the index, so a run longer than that is re-marked at each phase.
        until = time.time() + max(self.ttl_ms / 1000, RUNNING_MARK_SECONDS)
        self.client.zadd(RUNNING_INDEX, {f"{self.kind}:{self.object_id}": until})

    def ensure_held(self) -> None:
        """Called between phases: a worker that lost its lock stops before its next write."""
        if not self.lost:
            self._mark_running()
        if self.lost:
            raise LockBusyError(
                f"the lock on {self.kind} {self.object_id} expired while this worker held it; "
                "another worker may be running it"
            )


class HeldLock(Protocol):
    def ensure_held(self) -> None:
        """Raise LockBusyError if the lock was lost: the holder must stop before its next write."""
        ...


class HeldTogether:
    """Several locks checked as one between phases (the record's and its contacts')."""

    def __init__(self, *locks: HeldLock) -> None:
        self.locks = locks

    def ensure_held(self) -> None:
        for lock in self.locks:
            lock.ensure_held()
