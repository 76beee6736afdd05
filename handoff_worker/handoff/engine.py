"""The handoff: bring HubSpot to the state the rules ask for, for one lost deal or unqualified lead.

One run, in the order `_hand_off` tells it:

1. read (facts.py): the record as HubSpot has it now, never the event's copy. Gone, in a stage
   no pipeline lists, or not lost: settled here, nothing else happens. Lost without a known
   reason: parked as waiting, and its owner gets one task (owner_tasks.py). Otherwise everything
   the decision needs is gathered into one frozen `HandoffFacts`.
2. plan (domain.rules.build_plan): pure; which contacts go back to which stage, which are skipped
   and why. A dry run stops here.
3. lifecycle (lifecycle.py): clear, set, the stage checked in the set's answer, never blank.
4. nurtures (nurturing.py): lists and workflows for the contacts whose stage moved.
5. notices (notices.py): the marketing owner's task and the chat message a reason asks for, once
   per episode of each contact; a failure is logged, never fails the handoff.
6. finish: outcomes per contact, and the loss complete or the record in the dead letter.

Every run is audited (run_record.py). Safe to run any number of times, in parallel (a lock per
record) or after a crash (the ledger skips what is done). Talks to HubSpot only through the
`HubSpotGateway` protocol. Transient HubSpot errors propagate: the Celery task retries the whole
handoff. Permanent errors on one step (a deleted workflow, a dynamic list) fail that step, the
rest goes on, and the handoff ends in the dead-letter record.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime

import redis

from handoff_worker.domain.journey import Journey
from handoff_worker.domain.models import RecordKind
from handoff_worker.domain.nurture import NurtureRules
from handoff_worker.domain.rules import HandoffPlan, build_plan
from handoff_worker.errors import HubSpotError
from handoff_worker.handoff.audit import record_audit
from handoff_worker.handoff.deadletter import record_failure, remove_failure
from handoff_worker.handoff.facts import (
    FactReader,
    HandoffFacts,
    LostRecord,
    NotFound,
    NotLost,
    Sighting,
    UnknownStage,
)
from handoff_worker.handoff.journeys import ContactLocks, JourneyStore
from handoff_worker.handoff.leaving import Leaving
from handoff_worker.handoff.ledger import Ledger, Loss, LossSignature, next_loss
from handoff_worker.handoff.lifecycle import LifecycleWriter
from handoff_worker.handoff.lock import LOCK_TTL_SECONDS, HeldLock, HeldTogether, RecordLock
from handoff_worker.handoff.merging import Merges, record_locks
from handoff_worker.handoff.notices import EnvLookup, MarketingNoticesPhase, MessagePoster
from handoff_worker.handoff.nurturing import Nurturing
from handoff_worker.handoff.owner_tasks import ReasonReminders
from handoff_worker.handoff.reengagement import Reengagement
from handoff_worker.handoff.run_metrics import count_run
from handoff_worker.handoff.run_record import ContactOutcome, ContactResult, HandoffRun, Outcome
from handoff_worker.handoff.stages import PipelineCache
from handoff_worker.handoff.workflow_ids import WorkflowIds
from handoff_worker.hubspot.protocol import HubSpotGateway
from handoff_worker.pending import pending_key

RulesSource = Callable[[], tuple[NurtureRules, str]]


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
        poster: MessagePoster | None = None,
        env: EnvLookup = os.environ.get,
    ) -> None:
        self.gateway = gateway
        self.redis = client
        self.rules_source = rules
        self.dry_run = dry_run
        self.clock = clock
        self.lock_ttl = lock_ttl
        self.ledger = Ledger(client)
        self.pipelines = PipelineCache(client, gateway)
        self.facts = FactReader(gateway, self.pipelines)
        self.reminders = ReasonReminders(gateway, self.ledger)
        self.lifecycle = LifecycleWriter(gateway, self.ledger)
        self.journeys = JourneyStore(client)
        self.workflow_ids = WorkflowIds(client, gateway)
        self.leaving = Leaving(gateway, self.ledger, self.workflow_ids)
        self.nurturing = Nurturing(gateway, self.ledger, self.workflow_ids)
        self.merges = Merges(client, self.ledger, self.journeys, lock_ttl=lock_ttl)
        self.notices = MarketingNoticesPhase(gateway, client, poster, env, clock)
        self.reengagement = Reengagement(
            gateway, client, self.journeys, self.workflow_ids, self.pipelines, clock=clock, lock_ttl=lock_ttl
        )

    # ----------------------------------------------------------------- entry points

    def handoff(self, kind: RecordKind, object_id: str, trigger: str = "") -> HandoffRun:
        # Rules and version read together, once: the audit names the rules the decisions used.
        rules, rules_version = self.rules_source()
        run = HandoffRun(kind, object_id, trigger, self.dry_run, rules_version, at=self.clock().isoformat())
        calls_before = self.gateway.calls_made
        started = time.monotonic()
        with RecordLock(self.redis, kind, object_id, ttl=self.lock_ttl) as lock:
            try:
                self._hand_off(run, lock, rules)
            except HubSpotError as exc:
                run.outcome = Outcome.ERROR
                run.errors.append(str(exc))
                raise
            finally:
                run.api_calls = self.gateway.calls_made - calls_before
                run.duration_ms = int((time.monotonic() - started) * 1000)
                record_audit(self.redis, run.as_dict())
                count_run(run)
        return run

    def handoff_deal(self, deal_id: str, trigger: str = "") -> HandoffRun:
        return self.handoff(RecordKind.DEAL, deal_id, trigger)

    def handoff_contact(self, contact_id: str, trigger: str = "") -> HandoffRun:
        return self.handoff(RecordKind.CONTACT, contact_id, trigger)

    def forget(self, object_type: str, object_id: str, merged_into: str | None = None) -> None:
        """A deal/contact was deleted or merged: state about it is dropped or follows the merge.
        `object_type`: `deal`/`contact` or HubSpot's `deals`/`contacts`."""
        kind = RecordKind.named(object_type)
        if merged_into:
            self.merges.merge(kind, object_id, merged_into)
        else:
            # Under the record's lock: a handoff of it running now finishes first.
            with record_locks(self.redis, kind, [object_id], ttl=self.lock_ttl):
                self.ledger.forget(kind, object_id)
        # Work queued for a record that is gone has nothing to do; events about the surviving
        # record queue their own.
        self.redis.delete(pending_key(kind, object_id))
        remove_failure(self.redis, kind, object_id)

    # ----------------------------------------------------------------- one run

    def _hand_off(self, run: HandoffRun, lock: RecordLock, rules: NurtureRules) -> None:
        # 1. read
        seen = self.facts.sight(run.kind, run.object_id, rules)
        if not isinstance(seen, LostRecord):
            self._settle(run, seen)
            if isinstance(seen, NotLost) and seen.record is not None and not self.dry_run:
                self._came_back(run, seen, rules)
            return
        loss = self._loss(seen)
        run.loss_id = loss.loss_id
        run.reason_value = seen.raw_reason
        reason = rules.reason_for(seen.raw_reason)
        if reason is None:
            self.reminders.await_reason(run, loss, seen, rules, now=self.clock(), dry_run=self.dry_run)
            return
        run.reason = reason.label
        contact_ids = self.facts.contact_ids(seen)
        # Every decision about a contact is made, and carried out, under its lock.
        with self._contact_locks(contact_ids) as contact_locks:
            held = HeldTogether(lock, contact_locks)
            # A contact merged away since its id was read: decided on the survivor, in a new run.
            self.merges.check_not_merged(RecordKind.CONTACT, contact_ids)
            journeys = self.journeys.load(contact_ids)
            steps = self.ledger.steps(loss.loss_id)
            facts = self.facts.gather(seen, loss, reason, rules, steps, contact_ids, journeys)
            held.ensure_held()
            if not self.dry_run:
                self.ledger.clear_waiting(run.kind, run.object_id)
            # 2. plan
            plan = self._plan(facts, rules)
            for skip in plan.skipped:
                run.contacts[skip.contact_id] = ContactResult(
                    ContactOutcome.SKIPPED, f"{skip.reason.value}: {skip.detail}"
                )
            if self.dry_run:
                for action in plan.actions:
                    run.contacts[action.contact_id] = ContactResult(
                        ContactOutcome.PLANNED, f"{action.lifecycle_write.value} -> {action.target_stage}"
                    )
                run.outcome = Outcome.DRY_RUN
                return
            # The journeys first: a crash after this re-runs the same decisions, never new ones.
            self.journeys.save(plan.journeys, previous=journeys)
            self._keep_lead_statuses_at_start(plan, facts, journeys, rules)
            # 3. lifecycle
            moved = self.lifecycle.apply(run, held, loss, plan)
            # 4. nurtures: out of the old, then into the new
            self.workflow_ids.prepare(rules, plan)
            self.leaving.apply(run, held, loss, moved, facts.steps)
            self.nurturing.apply(run, held, loss, plan, moved, facts.steps)
            # 5. tell marketing: once per episode, never failing the handoff
            # Every contact this run acts on, fresh or resumed after a crash (the mark keeps it once).
            now_in = {**journeys, **{j.contact_id: j for j in plan.journeys}}
            acted_on = [now_in[a.contact_id] for a in plan.actions if a.contact_id in now_in]
            self.notices.apply(
                run, reason, rules.marketing_notices, acted_on, {c.id: c for c in facts.contacts}
            )
        # 6. finish
        self._finish(run, loss, plan, seen.signature)

    def _contact_locks(self, contact_ids: list[str]) -> AbstractContextManager[HeldLock]:
        if self.dry_run:  # a dry run changes nothing, so it waits for nobody
            return nullcontext(HeldTogether())
        return ContactLocks(self.redis, contact_ids, ttl=self.lock_ttl)

    # ----------------------------------------------------------------- read

    def _settle(self, run: HandoffRun, seen: Sighting) -> None:
        """The record is not one to hand off (now): say why, and keep no stale state about it."""
        match seen:
            case NotFound():
                run.outcome = Outcome.NOT_FOUND
                if not self.dry_run:
                    # Deleted in HubSpot: a replay would find nothing to hand off.
                    remove_failure(self.redis, run.kind, run.object_id)
            case UnknownStage(error=error):
                # Decide nothing and keep it for replay once the pipelines list the stage.
                run.outcome = Outcome.UNKNOWN_STAGE
                run.errors.append(error)
                if not self.dry_run:
                    # This cause replaces any earlier one: the dead letter says why it waits now.
                    remove_failure(self.redis, run.kind, run.object_id)
                    self._dead_letter(run, error)
            case NotLost(outcome=outcome):
                run.outcome = outcome
                if not self.dry_run:
                    # Reopened (or never lost): a later loss is a new one, and nobody waits for a
                    # reason. Nothing is left to replay: an earlier failure no longer applies.
                    self.ledger.close_loss(run.kind, run.object_id)
                    self.ledger.clear_waiting(run.kind, run.object_id)
                    remove_failure(self.redis, run.kind, run.object_id)

    def _came_back(self, run: HandoffRun, seen: NotLost, rules: NurtureRules) -> None:
        """A deal open (again), or a contact not unqualified: sales may have a recycled contact back."""
        assert seen.record is not None
        if seen.outcome is Outcome.DEAL_OPEN:
            self.reengagement.deal_open(run, seen.record.id, rules)
        elif run.kind is RecordKind.CONTACT:
            self.reengagement.contact_seen(run, seen.record, rules)
        if run.errors:
            self._dead_letter(run, "; ".join(run.errors))

    def _keep_lead_statuses_at_start(
        self, plan: HandoffPlan, facts: HandoffFacts, before: dict[str, Journey], rules: NurtureRules
    ) -> None:
        """The lead status of each contact whose episode starts now: a status it already had is
        no sign that sales took it back (see domain/reengagement.py)."""
        status_property = rules.leads.status_property
        contacts = {c.id: c for c in facts.contacts}
        started = {
            j.contact_id: (j.episode.number, contacts[j.contact_id].get(status_property) or "")
            for j in plan.journeys
            if j.contact_id in contacts
            and (before.get(j.contact_id) is None or before[j.contact_id].episode.number != j.episode.number)
        }
        self.reengagement.lead_statuses.record(started)

    def _loss(self, lost: LostRecord) -> Loss:
        current = self.ledger.current_loss(lost.kind, lost.record.id)
        loss = next_loss(current, lost.kind, lost.record.id, lost.fingerprint)
        if loss != current and not self.dry_run:
            self.ledger.save_loss(loss)
        return loss

    # ----------------------------------------------------------------- plan

    def _plan(self, facts: HandoffFacts, rules: NurtureRules) -> HandoffPlan:
        return build_plan(
            reason=facts.reason,
            rules=rules,
            deal_id=facts.deal_id,
            contacts=facts.contacts,
            other_deals_by_contact=facts.other_deals,
            stages=facts.stages,
            lifecycle_done=facts.lifecycle_done,
            fully_done=facts.fully_done,
            now=self.clock(),
            loss_id=facts.loss.loss_id,
            journeys=facts.journeys,
            opened_at=facts.opened_at,
        )

    # ----------------------------------------------------------------- finish

    def _finish(self, run: HandoffRun, loss: Loss, plan: HandoffPlan, signature: LossSignature) -> None:
        for action in plan.actions:
            contact = run.contact(action.contact_id)
            if contact.outcome is not ContactOutcome.FAILED:
                contact.outcome = ContactOutcome.RESUMED if action.resumed else ContactOutcome.RECYCLED
                contact.why = f"{action.lifecycle_write.value} -> {action.target_stage}"
        if run.errors:
            run.outcome = Outcome.PARTIAL_FAILURE
            self._dead_letter(run, "; ".join(run.errors))
            return
        run.outcome = Outcome.HANDED_OFF
        # With what HubSpot showed: a sweep tells this loss from a later one of the same record by it.
        self.ledger.mark_complete(loss, signature)
        remove_failure(self.redis, run.kind, run.object_id)

    def _dead_letter(self, run: HandoffRun, error: str) -> None:
        """Kept for `replay` once the config or the data is fixed: retrying alone will not help."""
        record_failure(
            self.redis,
            run.kind,
            run.object_id,
            error=error,
            attempts=1,
            now=self.clock(),
            trigger=run.trigger,
            permanent=True,
        )
