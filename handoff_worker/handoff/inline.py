"""Handoffs run in this process instead of queued for the workers: a resync with `--inline`, and
the replay of dead letters. Both treat an incomplete handoff as a failure to report."""

from __future__ import annotations

from dataclasses import dataclass, field

import redis

from handoff_worker.errors import HandoffError
from handoff_worker.handoff.deadletter import FailedHandoff
from handoff_worker.handoff.engine import HandoffEngine, HandoffReport

# Engine outcomes that mean the handoff did not complete (kept in the dead-letter record).
FAILED_OUTCOMES = frozenset({"partial_failure", "error"})


class InlineSink:
    """Runs each handoff a sweep finds in this process through the engine, as a worker would."""

    def __init__(self, engine: HandoffEngine) -> None:
        self.engine = engine

    def deal(self, deal_id: str) -> None:
        self._check(self.engine.handoff_deal(deal_id, "resync"))

    def contact(self, contact_id: str) -> None:
        self._check(self.engine.handoff_contact(contact_id, "resync"))

    @staticmethod
    def _check(report: HandoffReport) -> None:
        if report.outcome in FAILED_OUTCOMES:
            raise HandoffError("; ".join(report.errors) or report.outcome)


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
        run = engine.handoff_deal if failure.kind == "deal" else engine.handoff_contact
        try:
            report = run(failure.object_id, "replay")
        except (HandoffError, redis.RedisError) as exc:
            tally.failed.append(f"{failure.key}: {exc}")
            continue
        if report.outcome in FAILED_OUTCOMES:
            tally.failed.append(f"{failure.key}: {'; '.join(report.errors) or report.outcome}")
        elif report.outcome == "handed_off":
            tally.handed_off += 1
        else:
            tally.other[report.outcome] = tally.other.get(report.outcome, 0) + 1
    return tally
