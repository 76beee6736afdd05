"""What one finished run adds to the worker's metrics: the run by outcome and reason, its time,
and each contact's steps done or failed in it."""

from __future__ import annotations

from handoff_worker import metrics
from handoff_worker.handoff.ledger import LIFECYCLE_STEP
from handoff_worker.handoff.run_record import HandoffRun

_NURTURE_STEPS = ("workflow", "list", "property")


def step_label(step_or_failure: str) -> str:
    """`workflow:5102` or a failure text starting with it -> `workflow`; the lifecycle otherwise.
    Nurture keys (domain.nurture) start with their method, and a failure names its nurture first."""
    method = step_or_failure.split(":", 1)[0]
    return method if method in _NURTURE_STEPS else LIFECYCLE_STEP


def count_run(run: HandoffRun) -> None:
    kind = str(run.kind)
    metrics.HANDOFF_RUNS.labels(kind=kind, outcome=str(run.outcome), reason=run.reason or "").inc()
    metrics.HANDOFF_RUN_SECONDS.labels(kind=kind).observe(run.duration_ms / 1000)
    for contact in run.contacts.values():
        for step in contact.steps_done:
            metrics.HANDOFF_STEPS.labels(step=step_label(step), result="done").inc()
        for failure in contact.failures:
            metrics.HANDOFF_STEPS.labels(step=step_label(failure), result="failed").inc()
