"""Pending marks: each deal or contact is queued once, however many events or sweeps ask for it.

A record's mark says what the record has in the queue or in a worker right now:
- `q:live:<task id>`: a handoff queued by a webhook, on the live queue;
- `q:bulk:<task id>`: a handoff queued by a sweep or a backfill, on the bulk queue;
- `r:<task id>`: a handoff running (its task has started and reads HubSpot from now on).

`queue_once` sets marks and pushes the task messages in ONE Lua script, so two concurrent
requests can never both find a record unmarked and both queue it, and a mark never exists without
its message (nor a message without its mark): either both are written or neither is, and a
failure is an error for the caller to answer with a 503.

Who queues what:
- live work (webhooks) queues a record unless a live handoff for it is already queued. A queued
  bulk handoff does not hold live work back: live work takes the mark over and runs first. A
  running handoff does not either: it has read HubSpot already and cannot see the new event.
- bulk work (sweeps) queues a record only when it has no mark at all: never beside work already
  queued or running.

The task calls `start_running` first thing, BEFORE it reads HubSpot: its queued mark becomes a
running mark, so an event arriving from now on queues a fresh unit while sweeps still leave the
record alone. It calls `finish_running` when it ends. Both only touch the mark while it names their
own task, so a newer unit's mark is never lost.

Marks expire (live after PENDING_TTL_SECONDS, bulk after BULK_PENDING_TTL_SECONDS, long enough for
a large backlog to drain), so a lost message never blocks a record for good.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import redis

from handoff_worker.domain.models import RecordKind, WorkClass
from handoff_worker.state import KEY_PREFIX

PENDING_TTL_SECONDS = 3600
# A backfill of many thousand records can wait hours in the bulk queue; its marks must outlive that.
BULK_PENDING_TTL_SECONDS = 12 * 3600
PENDING_KINDS = frozenset(RecordKind)


# One request's or one sweep page's units, queued atomically.
# KEYS: the broker list (or "" when the caller publishes itself), E dedupe keys, U mark keys (the
#       list key stands in for units without a mark).
# ARGV: work class, dedupe TTL, mark TTL, E, U, then per unit: has-mark flag, mark value, message,
#       the count of events naming the unit and their 1-based indexes among the dedupe keys.
# An event whose dedupe key exists was seen before; a unit is queued when at least one of its events
# is new (or no dedupe keys were given) and its mark allows it. Returns one 0/1 per event (seen
# before or not), then one 0/1 per unit (queued or not).
_QUEUE_ONCE = """
local work_class = ARGV[1]
local seen_ttl, mark_ttl = ARGV[2], ARGV[3]
local event_count, unit_count = tonumber(ARGV[4]), tonumber(ARGV[5])
local new_event = {}
local result = {}
for i = 1, event_count do
  if redis.call('EXISTS', KEYS[1 + i]) == 0 then
    new_event[i] = true
    result[i] = 0
  else
    result[i] = 1
  end
end
local messages = {}
local a = 6
for u = 1, unit_count do
  local has_mark, value, message = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  local refs = tonumber(ARGV[a + 3])
  local fresh = event_count == 0
  for r = 1, refs do
    if new_event[tonumber(ARGV[a + 3 + r])] then fresh = true end
  end
  a = a + 4 + refs
  local queue = 0
  if fresh then
    if has_mark == '1' then
      local key = KEYS[1 + event_count + u]
      local current = redis.call('GET', key)
      local free = not current
      if current and work_class == 'live' then
        free = string.sub(current, 1, 7) ~= 'q:live:'
      end
      if free then
        redis.call('SET', key, value, 'EX', mark_ttl)
        queue = 1
      end
    else
      queue = 1
    end
  end
  if queue == 1 and KEYS[1] ~= '' then messages[#messages + 1] = message end
  result[#result + 1] = queue
end
if #messages > 0 then redis.call('LPUSH', KEYS[1], unpack(messages)) end
for i = 1, event_count do
  if new_event[i] then redis.call('SET', KEYS[1 + i], '1', 'EX', seen_ttl) end
end
return result
"""

# KEYS: the mark. ARGV: task id, TTL. The task's own queued mark (or none, or a running one)
# becomes its running mark; another task's queued mark is left for that task.
_START = """
local current = redis.call('GET', KEYS[1])
local own_queued = current == 'q:live:' .. ARGV[1] or current == 'q:bulk:' .. ARGV[1]
if current and string.sub(current, 1, 2) == 'q:' and not own_queued then return 0 end
redis.call('SET', KEYS[1], 'r:' .. ARGV[1], 'EX', ARGV[2])
return 1
"""

# KEYS: the mark. ARGV: the exact value to delete.
_DELETE_IF = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

RedisLike = redis.Redis | redis.client.Pipeline


_MARK_KEY = KEY_PREFIX + "pending:{}:{}"


def pending_key(kind: str, object_id: str) -> str:
    if kind not in PENDING_KINDS:
        raise ValueError(f"pending kind {kind!r} is not one of {sorted(k.value for k in PENDING_KINDS)}")
    return _MARK_KEY.format(kind, object_id)


def queued_mark(work_class: WorkClass, task_id: str) -> str:
    return f"q:{work_class}:{task_id}"


@dataclass(frozen=True)
class QueueEntry:
    """One unit to queue: its record (None for work that takes no mark) and the indexes (in the
    dedupe keys given beside it) of the events that ask for it."""

    record: tuple[str, str] | None  # (kind, object id)
    events: Sequence[int] = ()


# For the entry at this index: the task id it would run under and its message. Called only for the
# entries that may be queued, so a request whose records all have work queued builds no message.
Prepare = Callable[[int], tuple[str, str]]


@dataclass(frozen=True)
class QueueOnceResult:
    seen: tuple[bool, ...]  # one per dedupe key, in order: the event was seen before
    task_ids: tuple[str | None, ...]  # one per entry, in order: the task queued for it, or None

    @property
    def queued(self) -> tuple[bool, ...]:
        return tuple(task_id is not None for task_id in self.task_ids)


def queue_once(
    client: redis.Redis,
    list_key: str | None,
    entries: Sequence[QueueEntry],
    prepare: Prepare,
    *,
    work_class: WorkClass,
    dedupe_keys: Sequence[str] = (),
    dedupe_ttl: int = 1,
    mark_ttl: int | None = None,
) -> QueueOnceResult:
    """Mark and queue every entry its mark allows, in one atomic step (see the module doc).

    One read first (MGET) drops the entries whose record is already marked in a way that holds this
    work class back, so no message is built for them. That read decides nothing on its own: the
    script checks again, atomically, the entries that are left, and which events were seen before.
    `list_key` is the broker list the messages are pushed on; None when the caller publishes the
    queued entries itself (a broker that is not this Redis), then only marks are written and the
    caller must `unmark` them if its publish fails. Raises `redis.RedisError`: nothing is written.
    """
    if not entries and not dedupe_keys:
        return QueueOnceResult((), ())
    ttl = mark_ttl or (BULK_PENDING_TTL_SECONDS if work_class is WorkClass.BULK else PENDING_TTL_SECONDS)
    mark_keys = [_MARK_KEY.format(*e.record) if e.record is not None else None for e in entries]
    marked = [key for key in mark_keys if key is not None]
    current = iter(client.mget(marked) if marked else [])
    live = work_class is WorkClass.LIVE
    candidates = [
        index for index, key in enumerate(mark_keys) if key is None or _leaves_room(next(current), live=live)
    ]
    task_ids: list[str | None] = [None] * len(entries)
    if not candidates and not dedupe_keys:
        return QueueOnceResult((), tuple(task_ids))

    target = list_key or ""
    keys: list[str] = [target, *dedupe_keys]
    unit_args: list[str | int] = []
    prepared: list[str] = []
    for index in candidates:
        task_id, message = prepare(index)
        prepared.append(task_id)
        key = mark_keys[index]
        if key is None:
            keys.append(target or "-")
            unit_args += ["0", "", message]
        else:
            keys.append(key)
            unit_args += ["1", queued_mark(work_class, task_id), message]
        events = entries[index].events
        unit_args += [len(events), *(i + 1 for i in events)]
    args = [str(work_class), dedupe_ttl, ttl, len(dedupe_keys), len(candidates), *unit_args]
    reply = client.register_script(_QUEUE_ONCE)(keys=keys, args=args)
    flags = [bool(int(flag)) for flag in reply]
    for index, task_id, queued in zip(candidates, prepared, flags[len(dedupe_keys) :], strict=True):
        if queued:
            task_ids[index] = task_id
    return QueueOnceResult(tuple(flags[: len(dedupe_keys)]), tuple(task_ids))


def _leaves_room(mark: str | bytes | None, *, live: bool) -> bool:
    """Whether a record's mark, as last read, lets new work of the class in (the script's rule)."""
    if mark is None:
        return True
    if not live:
        return False
    prefix = b"q:live:" if isinstance(mark, bytes) else "q:live:"
    return not mark.startswith(prefix)  # type: ignore[arg-type]  # prefix matches mark's type


def unmark(
    client: redis.Redis,
    marks: Sequence[tuple[str, str, str]],
    work_class: WorkClass,
    *,
    dedupe_keys: Sequence[str] = (),
) -> None:
    """Take back what `queue_once` wrote when its messages could not be published: the marks, each
    (kind, id, task id), and the dedupe keys of the events it found new. Neither the records nor
    the events may look queued, or HubSpot's retry would be taken for a duplicate."""
    pipe = client.pipeline(transaction=False)
    for kind, object_id, task_id in marks:
        pipe.eval(_DELETE_IF, 1, pending_key(kind, object_id), queued_mark(work_class, task_id))
    if dedupe_keys:
        pipe.delete(*dedupe_keys)
    pipe.execute()


def start_running(client: redis.Redis, kind: str, object_id: str, *, task_id: str | None) -> None:
    """Called by the task first thing, before it re-reads HubSpot: an event arriving from now on
    queues a fresh unit, while sweeps still see the record as taken."""
    if not task_id:
        return
    client.eval(_START, 1, pending_key(kind, object_id), task_id, PENDING_TTL_SECONDS)


def finish_running(client: redis.Redis, kind: str, object_id: str, *, task_id: str | None) -> None:
    """Called by the task when it ends (done, failed or handed to a retry)."""
    if not task_id:
        return
    client.eval(_DELETE_IF, 1, pending_key(kind, object_id), f"r:{task_id}")


def requeue_bulk(client: redis.Redis, kind: str, object_id: str, *, task_id: str) -> None:
    """A bulk task that puts itself back on the bulk queue (same task id) marks the record queued
    again, unless other work for it was queued meanwhile."""
    client.set(
        pending_key(kind, object_id),
        queued_mark(WorkClass.BULK, task_id),
        nx=True,
        ex=BULK_PENDING_TTL_SECONDS,
    )


def pending_mark(client: redis.Redis, kind: str, object_id: str) -> str | None:
    """The record's mark as stored (for status views and tests), or None."""
    value = client.get(pending_key(kind, object_id))
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)
