"""The handoff: bring HubSpot to the state the rules ask for, for one lost deal or unqualified lead.

read (current state, never the event's) -> plan (pure rules) -> apply what the ledger says is
missing -> audit. Safe to run any number of times, in parallel (a lock per record) or after a
crash (the ledger). Talks to HubSpot only through the `HubSpotGateway` protocol.

Transient HubSpot errors propagate: the Celery task retries the whole handoff, and the ledger
makes the re-run skip what was done. Permanent errors on one step (a deleted workflow, a dynamic
list) fail that step, the rest goes on, and the handoff ends in the dead-letter record.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis

from handoff_worker.domain.models import CrmObject, NewTask, ObjectType
from handoff_worker.domain.nurture import Nurture, NurtureMethod, NurtureRules, ReasonRule
from handoff_worker.domain.rules import (
    EMAIL_PROPERTY,
    LIFECYCLE_PROPERTY,
    ContactAction,
    DealStatus,
    HandoffPlan,
    LifecycleWrite,
    StageCatalog,
    batched_nurtures,
    build_plan,
    is_unqualified,
    needs_escalation,
    owner_task_due,
)
from handoff_worker.errors import (
    HubSpotError,
    NotFoundError,
    PermanentHubSpotError,
    RateLimitedError,
    RequestNotSentError,
)
from handoff_worker.handoff.audit import record_audit
from handoff_worker.handoff.deadletter import record_failure, remove_failure
from handoff_worker.handoff.ledger import (
    DONE,
    LIFECYCLE_STEP,
    Ledger,
    Loss,
    Waiting,
    next_loss,
    step_field,
)
from handoff_worker.handoff.lock import LOCK_TTL_SECONDS, RecordLock
from handoff_worker.handoff.stages import PipelineCache
from handoff_worker.hubspot.protocol import HubSpotGateway
from handoff_worker.pending import pending_key

log = logging.getLogger(__name__)

DEAL = "deal"
CONTACT = "contact"
DEAL_PROPERTIES = ("dealname", "dealstage", "pipeline", "hubspot_owner_id", "closedate")
OTHER_DEAL_PROPERTIES = ("dealstage", "pipeline")
CONTACT_PROPERTIES = (EMAIL_PROPERTY, LIFECYCLE_PROPERTY, "firstname", "lastname", "hubspot_owner_id")

RulesSource = Callable[[], tuple[NurtureRules, str]]
HandoffBody = Callable[["HandoffReport", RecordLock, NurtureRules], None]


@dataclass
class ContactReport:
    outcome: str  # recycled, resumed, skipped, failed, planned (dry run)
    why: str = ""
    steps_done: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


@dataclass
class HandoffReport:
    """What one run did: the audit record."""

    kind: str
    object_id: str
    trigger: str
    dry_run: bool
    config_version: str
    outcome: str = "started"
    loss_id: str = ""
    reason: str | None = None
    reason_value: str | None = None
    contacts: dict[str, ContactReport] = field(default_factory=dict)
    enrollments: list[dict[str, str]] = field(default_factory=list)
    owner_task: str | None = None
    errors: list[str] = field(default_factory=list)
    api_calls: int = 0
    duration_ms: int = 0
    at: str = ""

    def contact(self, contact_id: str) -> ContactReport:
        return self.contacts.setdefault(contact_id, ContactReport("pending"))

    def fail(self, contact_id: str, message: str) -> None:
        report = self.contact(contact_id)
        report.outcome = "failed"
        report.failures.append(message)
        self.errors.append(f"contact {contact_id}: {message}")

    def as_dict(self) -> dict[str, Any]:
        record = {k: v for k, v in self.__dict__.items() if k != "contacts"}
        record["contacts"] = {cid: c.__dict__ for cid, c in self.contacts.items()}
        return record


class HandoffEngine:
    def __init__(
        self,
        gateway: HubSpotGateway,
        client: redis.Redis,
        rules: RulesSource,
        *,
        dry_run: bool = False,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        lock_ttl: float = LOCK_TTL_SECONDS,
    ) -> None:
        self.gateway = gateway
        self.redis = client
        self.rules_source = rules
        self.dry_run = dry_run
        self.clock = clock
        self.lock_ttl = lock_ttl
        self.ledger = Ledger(client)
        self.pipelines = PipelineCache(client, gateway)

    # ----------------------------------------------------------------- entry points

    def handoff_deal(self, deal_id: str, trigger: str = "") -> HandoffReport:
        return self._run(DEAL, deal_id, trigger, self._deal)

    def handoff_contact(self, contact_id: str, trigger: str = "") -> HandoffReport:
        return self._run(CONTACT, contact_id, trigger, self._contact)

    def forget(self, object_type: str, object_id: str, merged_into: str | None = None) -> None:
        """A deal/contact was deleted or merged: state about it is dropped or follows the merge."""
        kind = DEAL if object_type.rstrip("s") == DEAL else CONTACT
        if merged_into:
            self.ledger.move(kind, object_id, merged_into)
        else:
            self.ledger.forget(kind, object_id)
        # Work queued for a record that is gone has nothing to do; events about the surviving
        # record queue their own.
        self.redis.delete(pending_key(kind, object_id))
        remove_failure(self.redis, kind, object_id)

    def escalate_overdue(self) -> list[str]:
        """Records still waiting for a reason past the SLA: one task, once, for the escalation
        owner (owner_tasks.escalate_to_owner). Returns the escalated "kind:id" keys."""
        rules = self.rules_source()[0]
        owner = rules.owner_tasks.escalation_owner_id
        if not owner:
            return []
        now = self.clock()
        escalated = []
        for waiting in self.ledger.list_waiting():
            since = datetime.fromisoformat(waiting.since)
            if not needs_escalation(since, now, rules.owner_tasks.sla_hours, waiting.escalated):
                continue
            if self.dry_run:
                escalated.append(f"{waiting.kind}:{waiting.object_id}")
                continue
            # Marked first: a second escalation is worse than none (the owner already has a task).
            self.ledger.mark_escalated(waiting)
            self.gateway.create_task(
                NewTask(
                    subject=rules.owner_tasks.escalation_subject.replace("{deal_name}", waiting.name),
                    body=f"Waiting for a reason since {waiting.since}. "
                    + _reason_help(rules, None, waiting.kind),
                    owner_id=owner,
                    due_at=owner_task_due(now, rules.owner_tasks.sla_hours),
                    deal_id=waiting.object_id if waiting.kind == DEAL else None,
                    contact_id=waiting.object_id if waiting.kind == CONTACT else None,
                )
            )
            escalated.append(f"{waiting.kind}:{waiting.object_id}")
        return escalated

    # ----------------------------------------------------------------- the run

    def _run(self, kind: str, object_id: str, trigger: str, body: HandoffBody) -> HandoffReport:
        # Rules and version read together, once: the audit names the rules the decisions used.
        rules, rules_version = self.rules_source()
        report = HandoffReport(
            kind, object_id, trigger, self.dry_run, rules_version, at=self.clock().isoformat()
        )
        calls_before = self.gateway.calls_made
        started = time.monotonic()
        with RecordLock(self.redis, kind, object_id, ttl=self.lock_ttl) as lock:
            try:
                body(report, lock, rules)
            except HubSpotError as exc:
                report.outcome = "error"
                report.errors.append(str(exc))
                raise
            finally:
                report.api_calls = self.gateway.calls_made - calls_before
                report.duration_ms = int((time.monotonic() - started) * 1000)
                record_audit(self.redis, report.as_dict())
        return report

    # ----------------------------------------------------------------- deals

    def _deal(self, report: HandoffReport, lock: RecordLock, rules: NurtureRules) -> None:
        reason_property = rules.deals.reason_property
        try:
            deal = self.gateway.get_deal(report.object_id, [*DEAL_PROPERTIES, reason_property])
        except NotFoundError:
            self._not_found(report)
            return
        catalog, status = self._deal_status(deal, rules)
        if status is DealStatus.UNKNOWN:
            self._unknown_stage(report, deal)
            return
        if status is not DealStatus.LOST:
            self._not_lost(report, f"deal_{status.value}")
            return
        loss = self._loss(DEAL, deal.id, deal.get("closedate") or "")
        report.loss_id = loss.loss_id
        raw_reason = deal.get(reason_property)
        report.reason_value = raw_reason
        reason = rules.reason_for(raw_reason)
        if reason is None:
            name = deal.get("dealname") or f"deal {deal.id}"
            self._await_reason(report, loss, rules, raw_reason, name, deal.get("hubspot_owner_id"))
            return
        report.reason = reason.label
        contact_ids = self.gateway.associated_ids(ObjectType.DEAL, deal.id, ObjectType.CONTACT)
        contacts = self._read_contacts(contact_ids)
        lock.ensure_held()
        other_deals = self._other_deals(contacts, reason, exclude=deal.id)
        catalog = self._catalog_for(catalog, other_deals, rules)
        self._hand_off(report, lock, loss, rules, reason, deal.id, contacts, other_deals, catalog)

    def _deal_status(self, deal: CrmObject, rules: NurtureRules) -> tuple[StageCatalog, DealStatus]:
        catalog = self.pipelines.catalog(rules.deals)
        status = catalog.status(deal.get("pipeline"), deal.get("dealstage"))
        if status is DealStatus.UNKNOWN:
            # A stage added since the cache was filled: read the pipelines again, once.
            catalog = self.pipelines.catalog(rules.deals, refresh=True)
            status = catalog.status(deal.get("pipeline"), deal.get("dealstage"))
        return catalog, status

    def _catalog_for(
        self, catalog: StageCatalog, other_deals: dict[str, list[CrmObject]], rules: NurtureRules
    ) -> StageCatalog:
        deals = (d for ds in other_deals.values() for d in ds)
        if any(catalog.status(d.get("pipeline"), d.get("dealstage")) is DealStatus.UNKNOWN for d in deals):
            return self.pipelines.catalog(rules.deals, refresh=True, eager=False)
        return catalog

    def _unknown_stage(self, report: HandoffReport, deal: CrmObject) -> None:
        """Even fresh pipelines do not list the deal's stage: decide nothing, keep it for replay."""
        report.outcome = "unknown_stage"
        report.errors.append(
            f"deal {deal.id} is in stage {deal.get('dealstage')!r} of pipeline {deal.get('pipeline')!r}, "
            "which HubSpot's pipelines API does not list; check the pipeline settings, then replay"
        )
        if not self.dry_run:
            # This cause replaces any earlier one: the dead letter says why it waits now.
            remove_failure(self.redis, DEAL, deal.id)
            record_failure(
                self.redis,
                DEAL,
                deal.id,
                error=report.errors[-1],
                attempts=1,
                now=self.clock(),
                trigger=report.trigger,
                permanent=True,
            )

    # ----------------------------------------------------------------- unqualified leads

    def _contact(self, report: HandoffReport, lock: RecordLock, rules: NurtureRules) -> None:
        leads = rules.leads
        try:
            contact = self.gateway.get_contact(
                report.object_id, [*CONTACT_PROPERTIES, leads.status_property, leads.reason_property]
            )
        except NotFoundError:
            self._not_found(report)
            return
        if not is_unqualified(contact.properties, leads):
            self._not_lost(report, "not_unqualified")
            return
        loss = self._loss(CONTACT, contact.id, "")
        report.loss_id = loss.loss_id
        raw_reason = contact.get(leads.reason_property)
        report.reason_value = raw_reason
        reason = rules.reason_for(raw_reason)
        if reason is None:
            self._await_reason(
                report, loss, rules, raw_reason, _person_name(contact), contact.get("hubspot_owner_id")
            )
            return
        report.reason = reason.label
        deal_ids = self.gateway.associated_ids(ObjectType.CONTACT, contact.id, ObjectType.DEAL)
        deals = self.gateway.batch_read(ObjectType.DEAL, deal_ids, OTHER_DEAL_PROPERTIES) if deal_ids else []
        other_deals = {contact.id: deals}
        catalog = self._catalog_for(self.pipelines.catalog(rules.deals), other_deals, rules)
        self._hand_off(report, lock, loss, rules, reason, None, [contact], other_deals, catalog)

    # ----------------------------------------------------------------- shared steps

    def _not_lost(self, report: HandoffReport, outcome: str) -> None:
        report.outcome = outcome
        if not self.dry_run:
            # Reopened (or never lost): a later loss is a new one, and nobody waits for a reason.
            self.ledger.close_loss(report.kind, report.object_id)
            self.ledger.clear_waiting(report.kind, report.object_id)
            # Nothing is left to replay: an earlier failure no longer applies.
            remove_failure(self.redis, report.kind, report.object_id)

    def _not_found(self, report: HandoffReport) -> None:
        report.outcome = "not_found"
        if not self.dry_run:
            # Deleted in HubSpot: a replay would find nothing to hand off.
            remove_failure(self.redis, report.kind, report.object_id)

    def _loss(self, kind: str, object_id: str, fingerprint: str) -> Loss:
        current = self.ledger.current_loss(kind, object_id)
        loss = next_loss(current, kind, object_id, fingerprint)
        if loss != current and not self.dry_run:
            self.ledger.save_loss(loss)
        return loss

    def _read_contacts(self, contact_ids: Sequence[str]) -> list[CrmObject]:
        if not contact_ids:
            return []
        return self.gateway.batch_read(ObjectType.CONTACT, contact_ids, CONTACT_PROPERTIES)

    def _other_deals(
        self, contacts: Sequence[CrmObject], reason: ReasonRule, *, exclude: str
    ) -> dict[str, list[CrmObject]]:
        """Each contact's other deals: ONE batch association read and ONE batch deal read."""
        if not contacts or (not reason.recycle and reason.lifecycle_stage is None):
            return {}
        by_contact = self.gateway.batch_associated_ids(
            ObjectType.CONTACT, [c.id for c in contacts], ObjectType.DEAL
        )
        wanted = sorted({d for ids in by_contact.values() for d in ids} - {exclude})
        deals = self.gateway.batch_read(ObjectType.DEAL, wanted, OTHER_DEAL_PROPERTIES) if wanted else []
        by_id = {d.id: d for d in deals}
        return {cid: [by_id[d] for d in ids if d in by_id] for cid, ids in by_contact.items()}

    def _await_reason(
        self,
        report: HandoffReport,
        loss: Loss,
        rules: NurtureRules,
        raw_reason: str | None,
        name: str,
        owner_id: str | None,
    ) -> None:
        """Missing or unknown reason: nothing is recycled; the owner gets ONE task for this loss."""
        report.outcome = "waiting_for_reason"
        report.errors.append(
            f"reason {raw_reason!r} is not in the nurture config's reasons"
            if raw_reason
            else "no lost reason is filled in"
        )
        if self.dry_run:
            report.owner_task = self.ledger.owner_task(loss.loss_id) or "would create"
            return
        # Marked waiting first: if the task cannot be created, the escalation still finds it.
        previous = self.ledger.get_waiting(report.kind, report.object_id)
        if previous is None or previous.loss_id != loss.loss_id:
            since = self.clock().isoformat()
            self.ledger.set_waiting(
                Waiting(report.kind, report.object_id, since, loss.loss_id, name, owner_id or "")
            )
        report.owner_task = self._owner_task_once(report, loss, rules, raw_reason, name, owner_id)

    def _owner_task_once(
        self,
        report: HandoffReport,
        loss: Loss,
        rules: NurtureRules,
        raw_reason: str | None,
        name: str,
        owner_id: str | None,
    ) -> str:
        existing = self.ledger.owner_task(loss.loss_id)
        if existing is not None:
            return existing
        # At most once: a task is not idempotent (two reminders), and whether a failed call created
        # one cannot be known, so the intent is kept even on error. Only a 429 or a request that
        # never left (connection refused) is known to have created nothing; then the intent is
        # dropped and the retry may create it.
        self.ledger.set_owner_task(loss.loss_id, "intent")
        task = NewTask(
            subject=rules.owner_tasks.subject.replace("{deal_name}", name),
            body=_reason_help(rules, raw_reason, report.kind),
            owner_id=owner_id or None,
            due_at=owner_task_due(self.clock(), rules.owner_tasks.sla_hours),
            deal_id=report.object_id if report.kind == DEAL else None,
            contact_id=report.object_id if report.kind == CONTACT else None,
        )
        try:
            task_id = self.gateway.create_task(task)
        except (RateLimitedError, RequestNotSentError):
            self.ledger.clear_owner_task(loss.loss_id)
            raise
        self.ledger.set_owner_task(loss.loss_id, task_id)
        return task_id

    def _hand_off(
        self,
        report: HandoffReport,
        lock: RecordLock,
        loss: Loss,
        rules: NurtureRules,
        reason: ReasonRule,
        deal_id: str | None,
        contacts: Sequence[CrmObject],
        other_deals: dict[str, list[CrmObject]],
        catalog: StageCatalog,
    ) -> None:
        if not self.dry_run:
            self.ledger.clear_waiting(report.kind, report.object_id)
        steps = self.ledger.steps(loss.loss_id)
        nurture_keys = [n.key for n in batched_nurtures(reason)] if reason.recycle else []
        lifecycle_done = frozenset(
            c.id for c in contacts if steps.get(step_field(c.id, LIFECYCLE_STEP)) == DONE
        )
        fully_done = frozenset(
            cid for cid in lifecycle_done if all(steps.get(step_field(cid, k)) == DONE for k in nurture_keys)
        )
        plan = build_plan(
            reason=reason,
            rules=rules,
            deal_id=deal_id,
            contacts=contacts,
            other_deals_by_contact=other_deals,
            stages=catalog,
            lifecycle_done=lifecycle_done,
            fully_done=fully_done,
            now=self.clock(),
        )
        for skip in plan.skipped:
            report.contacts[skip.contact_id] = ContactReport("skipped", f"{skip.reason.value}: {skip.detail}")
        if self.dry_run:
            for action in plan.actions:
                report.contacts[action.contact_id] = ContactReport(
                    "planned", f"{action.lifecycle_write.value} -> {action.target_stage}"
                )
            report.outcome = "dry_run"
            return
        done = self._apply_lifecycle(report, lock, loss, plan)
        self._apply_nurtures(report, lock, loss, plan, done, steps)
        self._finish(report, loss, plan)

    # ----------------------------------------------------------------- lifecycle

    def _apply_lifecycle(
        self, report: HandoffReport, lock: RecordLock, loss: Loss, plan: HandoffPlan
    ) -> list[ContactAction]:
        """Clear, then set (+markers, +property nurtures), then read back. Returns the actions
        whose lifecycle step is done (resumed ones included)."""
        fresh = [a for a in plan.actions if not a.resumed]
        failed: set[str] = set()
        lock.ensure_held()
        self._write(report, fresh, failed)
        moved = [
            a for a in fresh if a.lifecycle_write is not LifecycleWrite.NONE and a.contact_id not in failed
        ]
        not_stuck = self._not_stuck(moved)
        if not_stuck:
            # Seen in HubSpot: a backward write answered 2xx and changed nothing. Try once more.
            retry = [a for a in moved if a.contact_id in not_stuck]
            self._write(report, [_as_clear_then_set(a) for a in retry], failed)
            for contact_id, stage in self._not_stuck(
                [a for a in retry if a.contact_id not in failed]
            ).items():
                target = next(a.target_stage for a in retry if a.contact_id == contact_id)
                report.fail(
                    contact_id,
                    f"lifecycle stage stayed {stage!r} after clearing and setting {target!r} twice; "
                    "check workflows or integrations that set lifecyclestage on this contact",
                )
                failed.add(contact_id)
        done = []
        for action in plan.actions:
            if action.contact_id in failed:
                continue
            if not action.resumed:
                self.ledger.mark_done(loss.loss_id, action.contact_id, LIFECYCLE_STEP)
                report.contact(action.contact_id).steps_done.append(LIFECYCLE_STEP)
            done.append(action)
        return done

    def _write(self, report: HandoffReport, actions: Sequence[ContactAction], failed: set[str]) -> None:
        to_clear = {
            a.contact_id: {LIFECYCLE_PROPERTY: ""}
            for a in actions
            if a.lifecycle_write is LifecycleWrite.CLEAR_THEN_SET and a.contact_id not in failed
        }
        if to_clear:
            self._update(report, to_clear, failed, "clear")
        cleared = set(to_clear) - failed
        to_set = {a.contact_id: dict(a.set_properties) for a in actions if a.set_properties}
        to_set = {cid: props for cid, props in to_set.items() if cid not in failed}
        if not to_set:
            return
        set_failed: set[str] = set()
        self._update(report, to_set, set_failed, "set")
        failed |= set_failed
        blank = [a for a in actions if a.contact_id in cleared & set_failed]
        if blank:
            self._rescue_cleared_stage(report, blank)

    def _rescue_cleared_stage(self, report: HandoffReport, actions: Sequence[ContactAction]) -> None:
        """The clear went through and the set did not: never leave a lifecycle stage blank. Costs
        nothing on the happy path. The contacts stay failed (their set was refused) either way."""
        with_more = {
            a.contact_id: {LIFECYCLE_PROPERTY: a.target_stage or ""}
            for a in actions
            if set(a.set_properties) - {LIFECYCLE_PROPERTY}
        }
        # The refusal may be about a marker or nurture property: the stage alone may pass.
        still_blank = set(self._refusals(with_more)) if with_more else set()
        still_blank |= {a.contact_id for a in actions if a.contact_id not in with_more}
        # After a clear HubSpot takes any stage, so the one read before the handoff goes back.
        restore = {
            a.contact_id: {LIFECYCLE_PROPERTY: a.previous_stage or ""}
            for a in actions
            if a.contact_id in still_blank
        }
        if not restore:
            return
        for contact_id, why in self._refusals(restore).items():
            stage = restore[contact_id][LIFECYCLE_PROPERTY]
            report.fail(
                contact_id,
                f"lifecyclestage is left blank: HubSpot refused writing back {stage!r} after the clear "
                f"({why}); set this contact's lifecycle stage in HubSpot, then replay",
            )

    def _update(
        self, report: HandoffReport, updates: dict[str, dict[str, str]], failed: set[str], what: str
    ) -> None:
        """One batch update. Records HubSpot refused (207) or a refused batch (e.g. a property that
        does not exist) fail those contacts; the others go on."""
        for contact_id, why in self._refusals(updates).items():
            written = sorted(updates[contact_id])
            report.fail(
                contact_id, f"HubSpot refused the {what} write of {written}: {why}; {_write_hint(written)}"
            )
            failed.add(contact_id)

    def _refusals(self, updates: dict[str, dict[str, str]]) -> dict[str, str]:
        """One batch update; returns the contacts HubSpot refused -> why."""
        try:
            result = self.gateway.batch_update_contacts(updates)
        except PermanentHubSpotError as exc:
            return {contact_id: str(exc) for contact_id in updates}
        return {
            contact_id: f"{error.category}: {error.message}"
            for error in result.errors
            for contact_id in error.ids
        }

    def _not_stuck(self, actions: Sequence[ContactAction]) -> dict[str, str]:
        """Contacts whose lifecycle stage is not the target after the write: id -> stage seen."""
        if not actions:
            return {}
        seen = {
            c.id: c.get(LIFECYCLE_PROPERTY) or ""
            for c in self.gateway.batch_read(
                ObjectType.CONTACT, [a.contact_id for a in actions], [LIFECYCLE_PROPERTY]
            )
        }
        return {
            a.contact_id: seen.get(a.contact_id, "(contact not found)")
            for a in actions
            if seen.get(a.contact_id) != a.target_stage
        }

    # ----------------------------------------------------------------- nurtures

    def _apply_nurtures(
        self,
        report: HandoffReport,
        lock: RecordLock,
        loss: Loss,
        plan: HandoffPlan,
        ready: Sequence[ContactAction],
        steps_before: dict[str, str],
    ) -> None:
        for nurture in batched_nurtures(plan.reason) if plan.reason.recycle else ():
            missing = [a for a in ready if steps_before.get(step_field(a.contact_id, nurture.key)) != DONE]
            if not missing:
                continue
            lock.ensure_held()
            if nurture.method is NurtureMethod.LIST:
                self._add_to_list(report, loss, nurture, missing)
            else:
                for action in missing:
                    self._enroll(report, loss, nurture, action)

    def _add_to_list(
        self, report: HandoffReport, loss: Loss, nurture: Nurture, actions: Sequence[ContactAction]
    ) -> None:
        assert nurture.list_id is not None
        ids = [a.contact_id for a in actions]
        try:
            result = self.gateway.add_to_list(nurture.list_id, ids)
        except PermanentHubSpotError as exc:
            for contact_id in ids:
                report.fail(contact_id, f"{nurture.key} ({nurture.name}): {exc}; {_fix_hint(nurture)}")
            return
        missing = set(result.missing)
        # Adding to a static list is idempotent (a member stays a member), so done is recorded after.
        for contact_id in ids:
            if contact_id in missing:
                report.fail(contact_id, f"{nurture.key}: HubSpot did not know the contact")
                continue
            self.ledger.mark_done(loss.loss_id, contact_id, nurture.key)
            report.contact(contact_id).steps_done.append(nurture.key)
            report.enrollments.append({"contact": contact_id, "nurture": nurture.key, "name": nurture.name})

    def _enroll(self, report: HandoffReport, loss: Loss, nurture: Nurture, action: ContactAction) -> None:
        assert nurture.workflow_id is not None
        email = (action.email or "").strip()
        if not email:
            report.fail(action.contact_id, f"{nurture.key}: the contact has no email to enroll by")
            return
        # Enrollment is not idempotent for the person (two enrollments, two emails), so the intent is
        # written first. A crash between the call and `done` leaves `intent`; the re-run then calls
        # again. That is safe: HubSpot does not enroll a contact a second time in a workflow that
        # does not allow re-enrollment, and a nurture workflow must not allow it (config check
        # warns). The alternative, skipping on `intent`, could leave the contact never enrolled.
        self.ledger.mark_intent(loss.loss_id, action.contact_id, nurture.key)
        try:
            self.gateway.enroll_in_workflow(nurture.workflow_id, email)
        except PermanentHubSpotError as exc:
            self.ledger.clear_step(loss.loss_id, action.contact_id, nurture.key)
            report.fail(action.contact_id, f"{nurture.key} ({nurture.name}): {exc}; {_fix_hint(nurture)}")
            return
        self.ledger.mark_done(loss.loss_id, action.contact_id, nurture.key)
        report.contact(action.contact_id).steps_done.append(nurture.key)
        report.enrollments.append(
            {"contact": action.contact_id, "nurture": nurture.key, "name": nurture.name}
        )

    # ----------------------------------------------------------------- the end

    def _finish(self, report: HandoffReport, loss: Loss, plan: HandoffPlan) -> None:
        for action in plan.actions:
            contact = report.contact(action.contact_id)
            if contact.outcome != "failed":
                contact.outcome = "resumed" if action.resumed else "recycled"
                contact.why = f"{action.lifecycle_write.value} -> {action.target_stage}"
        now = self.clock()
        if report.errors:
            report.outcome = "partial_failure"
            record_failure(
                self.redis,
                report.kind,
                report.object_id,
                error="; ".join(report.errors),
                attempts=1,
                now=now,
                trigger=report.trigger,
                permanent=True,
            )
            return
        report.outcome = "handed_off"
        self.ledger.mark_complete(loss)
        remove_failure(self.redis, report.kind, report.object_id)


def _as_clear_then_set(action: ContactAction) -> ContactAction:
    return ContactAction(
        action.contact_id,
        action.email,
        LifecycleWrite.CLEAR_THEN_SET,
        action.target_stage,
        {LIFECYCLE_PROPERTY: action.target_stage or ""},
        action.nurtures,
        previous_stage=action.previous_stage,
    )


def _write_hint(written: Sequence[str]) -> str:
    """What to check, by what the refused write carried."""
    if list(written) == [LIFECYCLE_PROPERTY]:
        return (
            "check the contact still exists, that the target is one of the portal's lifecycle stages "
            "(lifecycle_stage in the nurture YAML), and that no workflow or integration locks it"
        )
    return "check the marker and property-nurture names in the nurture YAML exist in HubSpot"


def _person_name(contact: CrmObject) -> str:
    name = " ".join(p for p in (contact.get("firstname"), contact.get("lastname")) if p)
    return name or contact.get(EMAIL_PROPERTY) or f"contact {contact.id}"


def _reason_help(rules: NurtureRules, raw_reason: str | None, kind: str) -> str:
    prop = rules.deals.reason_property if kind == DEAL else rules.leads.reason_property
    labels = ", ".join(r.label for r in rules.reasons)
    if raw_reason:
        return f"The reason {raw_reason!r} in {prop} is not one of the team's reasons. Pick one of: {labels}."
    return f"Fill in {prop} with one of: {labels}. Its contacts are handed to marketing once it is set."


def _fix_hint(nurture: Nurture) -> str:
    if nurture.method is NurtureMethod.LIST:
        return (
            f"check list {nurture.list_id} exists and is static, or fix it in the nurture YAML, then replay"
        )
    return (
        f"check workflow {nurture.workflow_id} exists and is on, or fix it in the nurture YAML, then replay"
    )
