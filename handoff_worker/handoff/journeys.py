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
import logging
import random
import secrets
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from types import TracebackType

import redis

from handoff_worker.domain.journey import Journey
from handoff_worker.handoff.ledger import LEDGER_TTL_SECONDS
from handoff_worker.handoff.lock import EXTEND_SCRIPT, LOCK_TTL_SECONDS, RELEASE_SCRIPT, LockBusyError
from handoff_worker.state import KEY_PREFIX

log = logging.getLogger(__name__)

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

    def contact_ids(self) -> Iterator[str]:
        """Every contact that has a journey (a SCAN: cheap per call, for reports, not for handoffs)."""
        prefix = journey_key("")
        for key in self.client.scan_iter(match=f"{prefix}*", count=1000):
            contact_id = str(key)[len(prefix) :]
            if contact_id and ":" not in contact_id:  # not the past episodes nor other per-contact keys
                yield contact_id

    def histories(self, contact_ids: Sequence[str]) -> dict[str, list[Journey]]:
        """Each contact's past episodes then its current one, oldest first (two round trips)."""
        current = self.load(contact_ids)
        pipe = self.client.pipeline(transaction=False)
        for contact_id in contact_ids:
            pipe.lrange(past_episodes_key(contact_id), 0, -1)
        histories: dict[str, list[Journey]] = {}
        for contact_id, past in zip(contact_ids, pipe.execute(), strict=True):
            episodes = [Journey.from_dict(json.loads(str(raw))) for raw in past]
            if contact_id in current:
                episodes.append(current[contact_id])
            histories[contact_id] = episodes
        return histories


class ContactLocks:
    """The locks of a set of contacts, held together (see the module's note on order and waits).

    One token for all of them: taken in one pipelined round trip, renewed by one background thread
    and released in one round trip, however many contacts a deal has."""

    def __init__(
        self,
        client: redis.Redis,
        contact_ids: Iterable[str],
        *,
        ttl: float = LOCK_TTL_SECONDS,
        wait_seconds: float = CONTACT_LOCK_WAIT_SECONDS,
    ) -> None:
        self.client = client
        self.contact_ids = sorted(set(contact_ids))
        self.keys = [contact_lock_key(c) for c in self.contact_ids]
        self.ttl_ms = int(ttl * 1000)
        self.wait_seconds = wait_seconds
        self.token = secrets.token_hex(16)
        self.lost: list[str] = []  # contacts whose lock a renewal found gone or taken over
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def __enter__(self) -> ContactLocks:
        if not self.keys:
            return self
        deadline = time.monotonic() + self.wait_seconds
        while (busy := self._take_all()) is not None:
            if time.monotonic() >= deadline:
                raise LockBusyError(
                    f"contact {busy} is being handed off by another worker (another of its deals); "
                    "this handoff is tried again shortly"
                )
            # Jitter, so two handoffs backing off from each other do not meet again in step.
            time.sleep(random.uniform(0.05, 0.25))
        self._renewer = threading.Thread(target=self._keep_alive, name="renew contact locks", daemon=True)
        self._renewer.start()
        return self

    def _take_all(self) -> str | None:
        """Every lock in one round trip, in id order; when one is busy, let go of those taken and
        name the busy contact."""
        pipe = self.client.pipeline(transaction=False)
        for key in self.keys:
            pipe.set(key, self.token, nx=True, px=self.ttl_ms)
        taken = [bool(ok) for ok in pipe.execute()]
        if all(taken):
            return None
        self._release([key for key, ok in zip(self.keys, taken, strict=True) if ok])
        return self.contact_ids[taken.index(False)]

    def _release(self, keys: Sequence[str]) -> None:
        if not keys:
            return
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.eval(RELEASE_SCRIPT, 1, key, self.token)
        pipe.execute()

    def _keep_alive(self) -> None:
        while not self._stop.wait(self.ttl_ms / 3000):
            try:
                pipe = self.client.pipeline(transaction=False)
                for key in self.keys:
                    pipe.eval(EXTEND_SCRIPT, 1, key, self.token, self.ttl_ms)
                renewed = pipe.execute()
            except redis.RedisError:
                log.warning("could not renew %d contact lock(s); trying again", len(self.keys))
                continue
            self.lost = [c for c, ok in zip(self.contact_ids, renewed, strict=True) if not ok]
            if self.lost:
                return

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=5)
        self._release(self.keys)

    def ensure_held(self) -> None:
        if self.lost:
            raise LockBusyError(
                f"the lock on contact {self.lost[0]} expired while this worker held it; "
                "another worker may be deciding about it"
            )
