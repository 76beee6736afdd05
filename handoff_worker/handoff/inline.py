"""Handoffs run in this process instead of queued for the workers: a resync with `--inline`, and
the replay of dead letters. Both treat an incomplete handoff as a failure to report."""

from __future__ import annotations

from dataclasses import dataclass, field

import redis

from handoff_worker.errors import HandoffError
from handoff_worker.handoff.deadletter import FailedHandoff
from handoff_worker.handoff.engine import HandoffEngine
from handoff_worker.handoff.run_record import HandoffRun, Outcome


class InlineSink:
    """Runs each handoff a sweep finds in this process through the engine, as a worker would."""

    def __init__(self, engine: HandoffEngine) -> None:
        self.engine = engine

    def deal(self, deal_id: str) -> bool:
        return self._check(self.engine.handoff_deal(deal_id, "resync"))

    def contact(self, contact_id: str) -> bool:
        return self._check(self.engine.handoff_contact(contact_id, "resync"))

    @staticmethod
    def _check(run: HandoffRun) -> bool:
        if run.outcome.incomplete:
            raise HandoffError("; ".join(run.errors) or run.outcome)
        return True


@dataclass
class ReplayTally:
    replayed: int = 0
    handed_off: int = 0
    other: dict[str, int] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)


def replay_failures(engine: HandoffEngine, failures: list[FailedHandoff]) -> ReplayTally:
    """Run each failed handoff again through the engine, going on past a failure. The engine
    removes a dead letter when its handoff completes."""
    tally = ReplayTally()
    for failure in failures:
        tally.replayed += 1
        try:
            run = engine.handoff(failure.kind, failure.object_id, "replay")
        except (HandoffError, redis.RedisError) as exc:
            tally.failed.append(f"{failure.key}: {exc}")
            continue
        if run.outcome.incomplete:
            tally.failed.append(f"{failure.key}: {'; '.join(run.errors) or run.outcome}")
        elif run.outcome is Outcome.HANDED_OFF:
            tally.handed_off += 1
        else:
            tally.other[run.outcome] = tally.other.get(run.outcome, 0) + 1
    return tally
