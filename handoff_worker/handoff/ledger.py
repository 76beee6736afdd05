"""What each loss has already done, so a task that runs again does only what is missing.

Loss identity. A deal can be lost, reopened, and lost again; the second loss must be handed off
anew, while a task re-run for the SAME loss must not redo anything. A loss is therefore keyed on
the record id plus a sequence number kept here:

- the engine sees the record NOT lost while a loss is active -> that loss is closed ("reopened"),
  and the next time the record is seen lost a new sequence starts;
- as a safety net for a reopen the engine never saw (two webhooks folded into one task), the
  deal's `closedate` is kept with the loss: HubSpot sets it when a deal enters a closed stage, so a
  different non-empty closedate means a different closing, hence a new loss.

The reason is deliberately NOT part of the identity: a missing reason filled in later is the same
loss (the one waiting for it), and a reason corrected after the handoff must not nurture twice.

Steps are recorded per loss and contact (`lifecycle`, each nurture key) plus `owner_task` once per
loss. A state is `done`, or `intent` for a call that is not idempotent and has been started.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import redis

from handoff_worker.domain.models import RecordKind
from handoff_worker.state import KEY_PREFIX

LEDGER_TTL_SECONDS = 400 * 24 * 3600  # a year and a bit: long after any retry or replay
DONE = "done"
INTENT = "intent"
OWNER_TASK_STEP = "owner_task"
LIFECYCLE_STEP = "lifecycle"
ACTIVE = "active"
REOPENED = "reopened"


def loss_key(kind: RecordKind, object_id: str) -> str:
    return f"{KEY_PREFIX}loss:{kind}:{object_id}"


def deleted_loss_key(kind: RecordKind, object_id: str) -> str:
    return f"{KEY_PREFIX}loss:deleted:{kind}:{object_id}"


# HubSpot sends a merged-away record's deletion beside the merge, in no set order: a deleted
# record's loss is kept this long (HubSpot's retry span and more) for a merge to move it.
DELETED_LOSS_TTL_SECONDS = 3 * 24 * 3600


def steps_key(loss_id: str) -> str:
    return f"{KEY_PREFIX}ledger:{loss_id}"


def waiting_key(kind: RecordKind, object_id: str) -> str:
    return f"{KEY_PREFIX}waiting:{kind}:{object_id}"


WAITING_INDEX = f"{KEY_PREFIX}waiting:index"


@dataclass(frozen=True)
class Loss:
    kind: RecordKind
    object_id: str
    sequence: int
    fingerprint: str
    state: str
    complete: bool = False

    @property
    def loss_id(self) -> str:
        return f"{self.kind}:{self.object_id}:{self.sequence}"


def next_loss(current: Loss | None, kind: RecordKind, object_id: str, fingerprint: str) -> Loss:
    """The loss a record seen lost now belongs to: the active one, or a new one."""
    if current is None:
        return Loss(kind, object_id, 1, fingerprint, ACTIVE)
    changed = bool(fingerprint and current.fingerprint and fingerprint != current.fingerprint)
    if current.state == REOPENED or changed:
        return Loss(kind, object_id, current.sequence + 1, fingerprint, ACTIVE)
    return current


@dataclass(frozen=True)
class LossSignature:
    """What HubSpot shows of a record's loss now: its stage, its fingerprint (a deal's closedate) and
    its reason. Kept with a loss when it completes, so a sweep can tell "this loss, already handed
    off" from "a later loss of the same record" (reopened and lost again, every webhook missed)
    without asking the engine to run."""

    stage: str
    fingerprint: str
    reason: str

    def same_loss_as(self, stage: str | None, fingerprint: str | None, reason: str | None) -> bool:
        """Does a completed loss that stored these values (None: stored before signatures were
        kept) look like this one? A fingerprint differs only when both are known, as in next_loss."""
        if fingerprint and self.fingerprint and fingerprint != self.fingerprint:
            return False
        if stage is not None and stage != self.stage:
            return False
        return reason is None or _fold(reason) == _fold(self.reason)


def _fold(text: str) -> str:
    return " ".join(text.split()).casefold()


@dataclass(frozen=True)
class Waiting:
    kind: RecordKind
    object_id: str
    since: str
    loss_id: str
    name: str
    owner_id: str
    escalated: bool = False


class Ledger:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    # ----------------------------------------------------------------- losses

    def current_loss(self, kind: RecordKind, object_id: str) -> Loss | None:
        raw = self.client.hgetall(loss_key(kind, object_id))
        if not raw:
            return None
        return Loss(
            kind,
            object_id,
            int(raw["sequence"]),
            str(raw.get("fingerprint", "")),
            str(raw.get("state", ACTIVE)),
            raw.get("complete") == "1",
        )

    def save_loss(self, loss: Loss) -> None:
        key = loss_key(loss.kind, loss.object_id)
        previous = self.current_loss(loss.kind, loss.object_id)
        pipe = self.client.pipeline()
        if previous is None or previous.sequence != loss.sequence:
            pipe.hdel(key, "complete")
        # One field at a time (still one round trip): redis-py's mapping type is invariant.
        pipe.hset(key, "sequence", loss.sequence)
        pipe.hset(key, "fingerprint", loss.fingerprint)
        pipe.hset(key, "state", loss.state)
        pipe.expire(key, LEDGER_TTL_SECONDS)
        pipe.execute()

    def close_loss(self, kind: RecordKind, object_id: str) -> bool:
        """The record is not lost (any more): a later loss is a new one. True if one was active."""
        current = self.current_loss(kind, object_id)
        if current is None or current.state == REOPENED:
            return False
        self.client.hset(loss_key(kind, object_id), "state", REOPENED)
        return True

    def mark_complete(self, loss: Loss, signature: LossSignature | None = None) -> None:
        key = loss_key(loss.kind, loss.object_id)
        pipe = self.client.pipeline()
        pipe.hset(key, "complete", "1")
        if signature is not None:
            pipe.hset(key, "done_stage", signature.stage)
            pipe.hset(key, "done_reason", signature.reason)
        pipe.execute()

    def is_complete(self, kind: RecordKind, object_id: str, seen: LossSignature | None = None) -> bool:
        """Was the record's latest loss handed off in full, and (given what HubSpot shows now) is
        it the same loss? For sweeps deciding what to queue: a loss is told by its stage, close
        date and reason, not by the record's id."""
        raw = {str(k): str(v) for k, v in self.client.hgetall(loss_key(kind, object_id)).items()}
        if raw.get("complete") != "1" or raw.get("state", ACTIVE) != ACTIVE:
            return False
        if seen is None:
            return True
        return seen.same_loss_as(raw.get("done_stage"), raw.get("fingerprint"), raw.get("done_reason"))

    # ----------------------------------------------------------------- steps

    def steps(self, loss_id: str) -> dict[str, str]:
        return {str(k): str(v) for k, v in self.client.hgetall(steps_key(loss_id)).items()}

    def _set_step(self, loss_id: str, field: str, value: str) -> None:
        pipe = self.client.pipeline()
        pipe.hset(steps_key(loss_id), field, value)
        pipe.expire(steps_key(loss_id), LEDGER_TTL_SECONDS)
        pipe.execute()

    def mark_done(self, loss_id: str, contact_id: str, step: str) -> None:
        self._set_step(loss_id, step_field(contact_id, step), DONE)

    def mark_intent(self, loss_id: str, contact_id: str, step: str) -> None:
        self._set_step(loss_id, step_field(contact_id, step), INTENT)

    def clear_step(self, loss_id: str, contact_id: str, step: str) -> None:
        self.client.hdel(steps_key(loss_id), step_field(contact_id, step))

    def owner_task(self, loss_id: str) -> str | None:
        value = self.client.hget(steps_key(loss_id), OWNER_TASK_STEP)
        return None if value is None else str(value)

    def set_owner_task(self, loss_id: str, value: str) -> None:
        self._set_step(loss_id, OWNER_TASK_STEP, value)

    def clear_owner_task(self, loss_id: str) -> None:
        self.client.hdel(steps_key(loss_id), OWNER_TASK_STEP)

    # ----------------------------------------------------------------- waiting for a reason

    def set_waiting(self, waiting: Waiting) -> None:
        key = waiting_key(waiting.kind, waiting.object_id)
        pipe = self.client.pipeline()
        pipe.set(key, json.dumps(waiting.__dict__))
        pipe.sadd(WAITING_INDEX, f"{waiting.kind}:{waiting.object_id}")
        pipe.execute()

    def get_waiting(self, kind: RecordKind, object_id: str) -> Waiting | None:
        raw = self.client.get(waiting_key(kind, object_id))
        if not raw:
            return None
        stored = json.loads(str(raw))
        return Waiting(**{**stored, "kind": RecordKind(stored["kind"])})

    def clear_waiting(self, kind: RecordKind, object_id: str) -> None:
        pipe = self.client.pipeline()
        pipe.delete(waiting_key(kind, object_id))
        pipe.srem(WAITING_INDEX, f"{kind}:{object_id}")
        pipe.execute()

    def list_waiting(self) -> list[Waiting]:
        found = []
        for member in sorted(self.client.smembers(WAITING_INDEX)):
            kind, _, object_id = str(member).partition(":")
            waiting = self.get_waiting(RecordKind(kind), object_id)
            if waiting is not None:
                found.append(waiting)
        return found

    def mark_escalated(self, waiting: Waiting) -> None:
        self.set_waiting(Waiting(**{**waiting.__dict__, "escalated": True}))

    # ----------------------------------------------------------------- merges and deletions

    def forget(self, kind: RecordKind, object_id: str) -> None:
        """Drop what is kept about a deleted record. Step hashes of past losses are left to expire."""
        self.clear_waiting(kind, object_id)
        if self.client.exists(loss_key(kind, object_id)):
            self.client.rename(loss_key(kind, object_id), deleted_loss_key(kind, object_id))
            self.client.expire(deleted_loss_key(kind, object_id), DELETED_LOSS_TTL_SECONDS)

    def move(self, kind: RecordKind, object_id: str, merged_into: str) -> None:
        """A merged record's loss and waiting state follow the record it was merged into, unless
        that record has its own (its own history wins)."""
        if not self.client.exists(loss_key(kind, object_id)) and self.client.exists(
            deleted_loss_key(kind, object_id)
        ):
            # The merged-away record's deletion was handled first: its loss is still to move.
            self.client.rename(deleted_loss_key(kind, object_id), loss_key(kind, object_id))
        source_loss = self.current_loss(kind, object_id)
        if source_loss is not None and self.current_loss(kind, merged_into) is None:
            # RENAMENX: a loss the survivor saved since the check above is never overwritten.
            self.client.renamenx(loss_key(kind, object_id), loss_key(kind, merged_into))
            # The steps stay under the old loss id; the moved loss points at them by a new id, so
            # copy them over (a merge is rare; the hash is small).
            steps = self.steps(source_loss.loss_id)
            if steps:
                target = Loss(
                    kind, merged_into, source_loss.sequence, source_loss.fingerprint, source_loss.state
                )
                pipe = self.client.pipeline()
                for field, value in steps.items():
                    pipe.hsetnx(steps_key(target.loss_id), field, value)  # the survivor's own win
                pipe.expire(steps_key(target.loss_id), LEDGER_TTL_SECONDS)
                pipe.execute()
        waiting = self.get_waiting(kind, object_id)
        if waiting is not None and self.get_waiting(kind, merged_into) is None:
            new_loss_id = f"{kind}:{merged_into}:{waiting.loss_id.rsplit(':', 1)[-1]}"
            self.set_waiting(
                Waiting(**{**waiting.__dict__, "object_id": merged_into, "loss_id": new_loss_id})
            )
        self.forget(kind, object_id)


def step_field(contact_id: str, step: str) -> str:
    return f"{contact_id}|{step}"
