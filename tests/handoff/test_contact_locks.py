"""Contact locks over real Redis: all of a handoff's contacts or none, nothing kept while waiting."""

from __future__ import annotations

import threading

import pytest
import redis

from handoff_worker.handoff.journeys import ContactLocks, contact_lock_key
from handoff_worker.handoff.lock import LockBusyError
from handoff_worker.testing import wait_until


def test_a_busy_contact_keeps_nothing_taken_while_waiting(redis_conn: redis.Redis) -> None:
    with ContactLocks(redis_conn, ["1", "2"]):
        with (
            pytest.raises(LockBusyError, match="contact 2 is being handed off"),
            ContactLocks(redis_conn, ["3", "2"], wait_seconds=0.3),
        ):
            pass
        # Contact 3 was free, yet the handoff that could not have 2 did not sit on it.
        assert redis_conn.get(contact_lock_key("3")) is None
    assert redis_conn.keys(contact_lock_key("*")) == []
    with ContactLocks(redis_conn, ["2", "3"]) as taken:
        assert all(redis_conn.get(contact_lock_key(c)) == taken.token for c in ("2", "3"))


def test_handoffs_over_crossing_contacts_all_get_their_turn(redis_conn: redis.Redis) -> None:
    """Taken in any order by the callers, overlapping sets never deadlock: each run waits its turn."""
    turns: list[str] = []
    errors: list[BaseException] = []

    def run(name: str, contacts: list[str]) -> None:
        try:
            for _ in range(15):
                with ContactLocks(redis_conn, contacts, wait_seconds=30):
                    turns.append(name)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [
        threading.Thread(target=run, args=("a", ["1", "2", "3"])),
        threading.Thread(target=run, args=("b", ["3", "2"])),
        threading.Thread(target=run, args=("c", ["2", "4", "1"])),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    assert sorted(turns) == ["a"] * 15 + ["b"] * 15 + ["c"] * 15


def test_a_lock_taken_over_is_noticed_before_the_next_write(redis_conn: redis.Redis) -> None:
    with ContactLocks(redis_conn, ["7", "8"], ttl=0.3) as held:
        held.ensure_held()
        redis_conn.set(contact_lock_key("8"), "someone else")
        wait_until(lambda: bool(held.lost), timeout=5, what="the renewal to notice")
        with pytest.raises(LockBusyError, match="contact 8 expired"):
            held.ensure_held()
    # Letting go never deletes a lock that is no longer ours.
    assert redis_conn.get(contact_lock_key("8")) == "someone else"
