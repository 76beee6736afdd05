"""Records waiting for a lost reason, and the HubSpot tasks that ask for it.

A lost deal (or unqualified lead) without a known reason is parked as waiting; its owner gets ONE
task per loss. Once `owner_tasks.sla_hours` have passed without a reason, the resync sweep
escalates ONCE to `owner_tasks.escalate_to_owner`. Both tasks follow the same three rules:

- subject: the YAML's template filled with `str.format`, `{deal_name}` its only placeholder and
  `{{` / `}}` a literal brace, exactly what the config validator checks and tells marketers;
- due date: when the reason is due, `sla_hours` after the record started waiting (so the
  escalation is created already due, and a retried first task keeps its deadline);
- at most once: a task is not idempotent (two reminders), so its mark (the ledger's intent, the
  waiting record's `escalated`) is written before the call, and taken back only when HubSpot
  surely created nothing: a 429, a request that never left, or a refusal (4xx). After a timeout or
  a 5xx the task may exist, so the mark stays and that one reminder may be lost.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime

from handoff_worker.domain.models import NewTask, ObjectType, RecordKind
from handoff_worker.domain.nurture import NurtureRules, OwnerTasks
from handoff_worker.domain.rules import needs_escalation, owner_task_due
from handoff_worker.errors import HubSpotError, PermanentHubSpotError, RateLimitedError, RequestNotSentError
from handoff_worker.handoff.facts import LostRecord
from handoff_worker.handoff.ledger import INTENT, Ledger, Loss, Waiting
from handoff_worker.handoff.run_record import HandoffRun, Outcome
from handoff_worker.hubspot.protocol import HubSpotGateway

log = logging.getLogger(__name__)
LABEL_MAX_AGE_S = 600.0
# Errors after which HubSpot surely created no task.
NOTHING_CREATED = (RateLimitedError, RequestNotSentError, PermanentHubSpotError)


def task_subject(template: str, name: str) -> str:
    """The one subject syntax, the one `nurture_config` validates: `{deal_name}`, `{{`, `}}`."""
    return template.format(deal_name=name)


def reason_due(waiting: Waiting, tasks: OwnerTasks) -> datetime:
    return owner_task_due(datetime.fromisoformat(waiting.since), tasks.sla_hours)


def is_overdue(waiting: Waiting, tasks: OwnerTasks, now: datetime) -> bool:
    """Past the SLA without a reason, not escalated yet, and someone to escalate to."""
    if not tasks.escalation_owner_id:
        return False
    return needs_escalation(datetime.fromisoformat(waiting.since), now, tasks.sla_hours, waiting.escalated)


def reason_property_for(rules: NurtureRules, kind: RecordKind) -> str:
    return {RecordKind.DEAL: rules.deals.reason_property, RecordKind.CONTACT: rules.leads.reason_property}[
        kind
    ]


class ReasonReminders:
    def __init__(self, gateway: HubSpotGateway, ledger: Ledger) -> None:
        self.gateway = gateway
        self.ledger = ledger
        # (object type, property) -> (label, when read): a task names the field as the owner sees
        # it in HubSpot; labels change rarely, so one read per property per LABEL_MAX_AGE_S.
        self._labels: dict[tuple[ObjectType, str], tuple[str, float]] = {}

    def field_label(self, kind: RecordKind, name: str) -> str:
        """The label HubSpot shows for the reason property, e.g. "Closed lost reason". When HubSpot
        cannot say, the internal name: a task that names the field oddly beats no task."""
        object_type = ObjectType.DEAL if kind is RecordKind.DEAL else ObjectType.CONTACT
        cached = self._labels.get((object_type, name))
        if cached is not None and time.monotonic() - cached[1] < LABEL_MAX_AGE_S:
            return cached[0]
        try:
            label = self.gateway.get_property(object_type, name).label or name
        except HubSpotError as exc:
            log.info("reason property label unread, the task names %s: %s", name, exc)
            return name
        self._labels[(object_type, name)] = (label, time.monotonic())
        return label

    def await_reason(
        self,
        run: HandoffRun,
        loss: Loss,
        lost: LostRecord,
        rules: NurtureRules,
        *,
        now: datetime,
        dry_run: bool,
    ) -> None:
        """Missing or unknown reason: nothing is recycled; the owner gets ONE task for this loss."""
        run.outcome = Outcome.WAITING_FOR_REASON
        run.errors.append(
            f"reason {lost.raw_reason!r} is not in the nurture config's reasons"
            if lost.raw_reason
            else "no lost reason is filled in"
        )
        if dry_run:
            run.owner_task = self.ledger.owner_task(loss.loss_id) or "would create"
            return
        # Marked waiting first: if the task cannot be created, the escalation still finds it.
        waiting = self.ledger.get_waiting(run.kind, run.object_id)
        if waiting is None or waiting.loss_id != loss.loss_id:
            waiting = Waiting(
                run.kind, run.object_id, now.isoformat(), loss.loss_id, lost.name, lost.owner_id or ""
            )
            self.ledger.set_waiting(waiting)
        run.owner_task = self._first_task_once(waiting, lost, rules)

    def _first_task_once(self, waiting: Waiting, lost: LostRecord, rules: NurtureRules) -> str:
        existing = self.ledger.owner_task(waiting.loss_id)
        if existing is not None:
            return existing
        self.ledger.set_owner_task(waiting.loss_id, INTENT)
        task = self._task(
            waiting,
            subject=task_subject(rules.owner_tasks.subject, lost.name),
            body=_reason_help(rules, lost.raw_reason, self._reason_field(rules, waiting.kind)),
            owner_id=lost.owner_id or None,
            tasks=rules.owner_tasks,
        )
        try:
            task_id = self.gateway.create_task(task)
        except NOTHING_CREATED:
            self.ledger.clear_owner_task(waiting.loss_id)
            raise
        self.ledger.set_owner_task(waiting.loss_id, task_id)
        return task_id

    def escalate(self, waiting: Waiting, rules: NurtureRules) -> None:
        """The one escalation for a record still waiting past the SLA (see `is_overdue`). Marked
        first: a crash between mark and task loses one reminder, the other order would send a
        second task on the next sweep."""
        tasks = rules.owner_tasks
        name = waiting.name or f"{waiting.kind} {waiting.object_id}"
        task = self._task(
            waiting,
            subject=task_subject(tasks.escalation_subject, name),
            body=(
                f"No lost reason on {name} since {waiting.since}; the nurture waits for it. "
                f"Set {self._reason_field(rules, waiting.kind)} and the next resync hands it off."
            ),
            owner_id=tasks.escalation_owner_id,
            tasks=tasks,
        )
        self.ledger.mark_escalated(waiting)
        try:
            self.gateway.create_task(task)
        except NOTHING_CREATED:
            self.ledger.set_waiting(waiting)  # the record as it was: not escalated
            raise

    def _reason_field(self, rules: NurtureRules, kind: RecordKind) -> str:
        return f"the field '{self.field_label(kind, reason_property_for(rules, kind))}'"

    @staticmethod
    def _task(
        waiting: Waiting, *, subject: str, body: str, owner_id: str | None, tasks: OwnerTasks
    ) -> NewTask:
        return NewTask(
            subject=subject,
            body=body,
            owner_id=owner_id,
            due_at=reason_due(waiting, tasks),
            deal_id=waiting.object_id if waiting.kind is RecordKind.DEAL else None,
            contact_id=waiting.object_id if waiting.kind is RecordKind.CONTACT else None,
        )


def _reason_help(rules: NurtureRules, raw_reason: str | None, field_name: str) -> str:
    prop = field_name
    labels = ", ".join(r.label for r in rules.reasons)
    if raw_reason:
        return f"The reason {raw_reason!r} in {prop} is not one of the team's reasons. Pick one of: {labels}."
    return f"Fill in {prop} with one of: {labels}. Its contacts are handed to marketing once it is set."
