"""Where each contact's journey is kept (beside the ledger, in Redis), and the contact locks.

The journey itself and its transitions are pure (`domain.journey`); this module only stores what
they return. A journey is changed only while its contact's lock is held: two handoffs of two deals
sharing a contact decide one after the other, the second seeing what the first decided.

Locks for several contacts are taken all at once or not at all, in a stable (sorted) order, and
none is kept while waiting for another: a handoff that finds one busy lets go of those it took,
waits a moment and tries again, so two handoffs can never hold one each and wait for the other.
Keys name contacts by id only, never by email.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterable, Sequence
from types import TracebackType

import redis

from handoff_worker.domain.journey import Journey
from handoff_worker.handoff.ledger import LEDGER_TTL_SECONDS
from handoff_worker.handoff.lock import LOCK_TTL_SECONDS, LockBusyError, RenewedLock
from handoff_worker.state import KEY_PREFIX

# How long a handoff waits for a contact another handoff is deciding about, before it gives up
# (the task is then queued again): a handoff holds its contacts for a few HubSpot calls.
CONTACT_LOCK_WAIT_SECONDS = 20.0


def journey_key(contact_id: str) -> str:
    return f"{KEY_PREFIX}journey:{contact_id}"


def past_episodes_key(contact_id: str) -> str:
    return f"{KEY_PREFIX}journey:{contact_id}:past"


def contact_lock_key(contact_id: str) -> str:
    # Not the record lock of an unqualified lead (lock:contact:ID): that handoff takes both.
    return f"{KEY_PREFIX}lock:journey:{contact_id}"


class JourneyStore:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def load(self, contact_ids: Sequence[str]) -> dict[str, Journey]:
        """The stored journeys of these contacts (one round trip); contacts without one are left out."""
        if not contact_ids:
            return {}
        raw = self.client.mget([journey_key(c) for c in contact_ids])
        return {
            contact_id: Journey.from_dict(json.loads(str(value)))
            for contact_id, value in zip(contact_ids, raw, strict=True)
            if value
        }

    def get(self, contact_id: str) -> Journey | None:
        return self.load([contact_id]).get(contact_id)

    def save(self, journeys: Iterable[Journey], *, previous: dict[str, Journey] | None = None) -> None:
        """Store these journeys (one round trip). When an episode replaces an earlier one of
        `previous`, the earlier one is kept in the contact's history of past episodes."""
        before = previous or {}
        pipe = self.client.pipeline()
        for journey in journeys:
            old = before.get(journey.contact_id)
            if old is not None and old.episode.number and old.episode.number != journey.episode.number:
                closed = Journey(journey.contact_id, journey.closed or old.episode)
                pipe.rpush(past_episodes_key(journey.contact_id), json.dumps(closed.as_dict()))
                pipe.expire(past_episodes_key(journey.contact_id), LEDGER_TTL_SECONDS)
            pipe.set(journey_key(journey.contact_id), json.dumps(journey.as_dict()), ex=LEDGER_TTL_SECONDS)
        pipe.execute()

    def past_episodes(self, contact_id: str) -> list[Journey]:
        return [
            Journey.from_dict(json.loads(str(raw)))
            for raw in self.client.lrange(past_episodes_key(contact_id), 0, -1)
        ]


class ContactLocks:
    """The locks of a set of contacts, held together (see the module's note on order and waits)."""

    def __init__(
        self,
        client: redis.Redis,
        contact_ids: Iterable[str],
        *,
        ttl: float = LOCK_TTL_SECONDS,
        wait_seconds: float = CONTACT_LOCK_WAIT_SECONDS,
    ) -> None:
        self.contact_ids = sorted(set(contact_ids))
        self.locks = [RenewedLock(client, contact_lock_key(c), ttl_seconds=ttl) for c in self.contact_ids]
        self.wait_seconds = wait_seconds

    def __enter__(self) -> ContactLocks:
        deadline = time.monotonic() + self.wait_seconds
        while True:
            busy = self._take_all()
            if busy is None:
                return self
            if time.monotonic() >= deadline:
                raise LockBusyError(
                    f"contact {busy} is being handed off by another worker (another of its deals); "
                    "this handoff is tried again shortly"
                )
            # Jitter, so two handoffs backing off from each other do not meet again in step.
            time.sleep(random.uniform(0.05, 0.25))

    def _take_all(self) -> str | None:
        """Take every lock in order; on the first busy one, let go of the rest and name it."""
        taken: list[RenewedLock] = []
        for contact_id, lock in zip(self.contact_ids, self.locks, strict=True):
            if not lock.acquire():
                for held in reversed(taken):
                    held.release()
                return contact_id
            taken.append(lock)
        return None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for lock in reversed(self.locks):
            lock.release()

    def ensure_held(self) -> None:
        lost = [c for c, lock in zip(self.contact_ids, self.locks, strict=True) if lock.lost]
        if lost:
            raise LockBusyError(
                f"the lock on contact {lost[0]} expired while this worker held it; "
                "another worker may be deciding about it"
            )
