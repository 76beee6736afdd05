"""Merges and deletions in HubSpot: what the worker keeps about a record follows it, or goes.

A merge names a survivor and the records merged into it. What was kept under a merged-away id
(its loss and waiting state in the ledger, for a contact also its journey, its past episodes, the
lead status its episode started with, and the per-contact steps of every loss it went through)
moves to the survivor, under the locks of BOTH records, taken all at once in a stable order, so a
handoff of either cannot run in between. Nothing the survivor already holds is overwritten: its
own loss, waiting state, journey and steps win; a merged-away journey the survivor does not take
over is kept in the survivor's past episodes, so its history is not lost.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager

import redis

from handoff_worker.domain.journey import Journey
from handoff_worker.domain.models import RecordKind
from handoff_worker.handoff.journeys import ContactLocks, JourneyStore, journey_key, past_episodes_key
from handoff_worker.handoff.ledger import LEDGER_TTL_SECONDS, Ledger, steps_key
from handoff_worker.handoff.lock import LOCK_TTL_SECONDS, LockBusyError, RecordLock
from handoff_worker.handoff.reengagement import lead_status_at_start_key
from handoff_worker.state import KEY_PREFIX

# A merged-away id is remembered about as long as HubSpot retries webhooks: a handoff that read it
# before the merge finds out, once it holds the locks, and runs again on what HubSpot shows now.
MERGED_AWAY_TTL_SECONDS = 3 * 24 * 3600


def merged_away_key(kind: RecordKind, object_id: str) -> str:
    return f"{KEY_PREFIX}merged:{kind}:{object_id}"


class MergedAwayError(LockBusyError):
    """A record this run read was merged into another meanwhile: the run starts again (re-reading
    HubSpot, which now shows the survivor), as when another worker holds the record."""


# How long a merge waits for a handoff of either record to finish before its task is queued again.
MERGE_LOCK_WAIT_SECONDS = 20.0


@contextmanager
def record_locks(
    client: redis.Redis,
    kind: RecordKind,
    object_ids: Sequence[str],
    *,
    ttl: float = LOCK_TTL_SECONDS,
    wait_seconds: float = MERGE_LOCK_WAIT_SECONDS,
) -> Iterator[None]:
    """The record locks of these records, all or none, taken in id order; none is kept while
    waiting for another (the same rule as the contact locks), so two merges cannot deadlock."""
    ordered = sorted(set(object_ids), key=lambda i: (len(i), i))
    deadline = time.monotonic() + wait_seconds
    while True:
        locks = [RecordLock(client, kind, i, ttl=ttl) for i in ordered]
        taken: list[RecordLock] = []
        for lock in locks:
            if not lock.acquire():
                break
            taken.append(lock)
        if len(taken) == len(locks):
            break
        for lock in reversed(taken):
            lock.release()
        if time.monotonic() >= deadline:
            raise LockBusyError(
                f"{kind} {' or '.join(ordered)} is being handed off; the merge is tried again"
            )
        time.sleep(random.uniform(0.05, 0.25))
    try:
        yield
    finally:
        for lock in reversed(taken):
            lock.release()


class Merges:
    def __init__(
        self, client: redis.Redis, ledger: Ledger, journeys: JourneyStore, *, lock_ttl: float
    ) -> None:
        self.client = client
        self.ledger = ledger
        self.journeys = journeys
        self.lock_ttl = lock_ttl

    def merge(self, kind: RecordKind, merged_id: str, survivor_id: str) -> None:
        with ExitStack() as held:
            held.enter_context(record_locks(self.client, kind, [merged_id, survivor_id], ttl=self.lock_ttl))
            if kind is RecordKind.CONTACT:
                # Deal handoffs decide about contacts under these, not under the contact's record lock.
                held.enter_context(ContactLocks(self.client, [merged_id, survivor_id], ttl=self.lock_ttl))
            self.client.set(merged_away_key(kind, merged_id), survivor_id, ex=MERGED_AWAY_TTL_SECONDS)
            self.ledger.move(kind, merged_id, survivor_id)
            if kind is RecordKind.CONTACT:
                self._move_journey(merged_id, survivor_id)

    def check_not_merged(self, kind: RecordKind, object_ids: Sequence[str]) -> None:
        """Raise `MergedAwayError` when one of these records was merged away (one Redis read)."""
        if not object_ids:
            return
        survivors = self.client.mget([merged_away_key(kind, i) for i in object_ids])
        for object_id, raw in zip(object_ids, survivors, strict=True):
            survivor = raw.decode() if isinstance(raw, bytes) else raw
            if survivor:
                raise MergedAwayError(
                    f"{kind} {object_id} was merged into {survivor} during this handoff; it runs again"
                )

    def _move_journey(self, merged_id: str, survivor_id: str) -> None:
        merged = self.journeys.get(merged_id)
        survivor = self.journeys.get(survivor_id)
        past = self.journeys.past_episodes(merged_id)
        if merged is not None:
            self._move_steps(merged, past, merged_id, survivor_id)
        pipe = self.client.pipeline()
        if merged is not None and survivor is None:
            moved = Journey(survivor_id, merged.episode)
            pipe.set(journey_key(survivor_id), json.dumps(moved.as_dict()), ex=LEDGER_TTL_SECONDS)
            status = self.client.get(lead_status_at_start_key(merged_id))
            if status:
                pipe.set(lead_status_at_start_key(survivor_id), status, ex=LEDGER_TTL_SECONDS, nx=True)
        # The merged-away history, and its current episode when the survivor keeps its own, go to
        # the survivor's past episodes: kept, never in the survivor's place.
        history = [*past, *([merged] if merged is not None and survivor is not None else [])]
        for journey in history:
            pipe.rpush(
                past_episodes_key(survivor_id), json.dumps(Journey(survivor_id, journey.episode).as_dict())
            )
        if history:
            pipe.expire(past_episodes_key(survivor_id), LEDGER_TTL_SECONDS)
        pipe.delete(journey_key(merged_id), past_episodes_key(merged_id), lead_status_at_start_key(merged_id))
        pipe.execute()

    def _move_steps(self, merged: Journey, past: Sequence[Journey], merged_id: str, survivor_id: str) -> None:
        """The per-contact steps of every loss the merged contact went through (as its journey
        records them) are renamed to the survivor, unless the survivor has that step already."""
        loss_ids = {s.loss_id for j in (merged, *past) for s in j.episode.sources}
        prefix = f"{merged_id}|"
        for loss_id in sorted(loss_ids):
            key = steps_key(loss_id)
            steps = {str(f): str(v) for f, v in self.client.hgetall(key).items()}
            mine = {f: v for f, v in steps.items() if f.startswith(prefix)}
            if not mine:
                continue
            pipe = self.client.pipeline()
            for field, value in mine.items():
                pipe.hsetnx(key, f"{survivor_id}|{field[len(prefix) :]}", value)
            pipe.hdel(key, *mine)
            pipe.execute()
