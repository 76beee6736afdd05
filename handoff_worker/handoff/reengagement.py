"""The came-back phase: sales works a recycled contact again, so marketing stops.

Run whenever the worker sees, freshly read from HubSpot, something that may mean sales has a
contact back: a deal in an open stage (created, reopened, or newly associated: each sends its own
webhook, all routed to the deal's handoff task), a contact's lifecycle stage or lead status
changed by someone else, or the resync sweep going over recycled contacts. Whether it does is
decided by `domain.reengagement.came_back_how`; what it does to the journey by
`domain.journey.on_came_back`.

For each contact that came back, under its lock: out of its nurture's workflow (legacy
unenrollment, by email), off its list (one removal per list), its nurture property cleared (one
batch update for all), and only then the journey records when and how it came back. Leaving is
idempotent in HubSpot, so a crash or a transient error before the journey is saved only repeats
harmless calls on the retry; a contact that failed for good keeps its journey as it was and the run
goes to the dead letter.

A contact that is not recycled costs nothing here beyond a Redis read.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

import redis

from handoff_worker.domain.journey import Journey, JourneyState, JourneyStep, on_came_back
from handoff_worker.domain.models import CrmObject, ObjectType
from handoff_worker.domain.nurture import Nurture, NurtureMethod, NurtureRules
from handoff_worker.domain.reengagement import SalesSignals, came_back_how
from handoff_worker.domain.rules import EMAIL_PROPERTY, LIFECYCLE_PROPERTY, DealStatus
from handoff_worker.handoff.journeys import ContactLocks, JourneyStore
from handoff_worker.handoff.leaving import leave_list, unenroll
from handoff_worker.handoff.ledger import LEDGER_TTL_SECONDS
from handoff_worker.handoff.lock import LOCK_TTL_SECONDS
from handoff_worker.handoff.run_record import ContactOutcome, HandoffRun
from handoff_worker.handoff.stages import PipelineCache
from handoff_worker.handoff.workflow_ids import WorkflowIds
from handoff_worker.hubspot.protocol import HubSpotGateway
from handoff_worker.state import KEY_PREFIX

DEAL_STAGE_PROPERTIES = ("dealstage", "pipeline")


def lead_status_at_start_key(contact_id: str) -> str:
    return f"{KEY_PREFIX}journey:{contact_id}:lead_status_at_start"


class LeadStatusesAtStart:
    """The lead status each contact had when its current episode started (see
    domain/reengagement.py: a status it already had is no sign of sales)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def record(self, contacts: Mapping[str, tuple[int, str]]) -> None:
        """contact id -> (episode number, lead status then)."""
        if not contacts:
            return
        pipe = self.client.pipeline(transaction=False)
        for contact_id, (episode, status) in contacts.items():
            value = json.dumps({"episode": episode, "status": status})
            pipe.set(lead_status_at_start_key(contact_id), value, ex=LEDGER_TTL_SECONDS)
        pipe.execute()

    def load(self, journeys: Mapping[str, Journey]) -> dict[str, str]:
        """The recorded status of each contact's current episode (contacts without one left out)."""
        ids = list(journeys)
        if not ids:
            return {}
        found: dict[str, str] = {}
        for contact_id, raw in zip(
            ids, self.client.mget([lead_status_at_start_key(c) for c in ids]), strict=True
        ):
            if raw:
                stored = json.loads(str(raw))
                if stored.get("episode") == journeys[contact_id].episode.number:
                    found[contact_id] = str(stored.get("status") or "")
        return found


class Reengagement:
    def __init__(
        self,
        gateway: HubSpotGateway,
        client: redis.Redis,
        journeys: JourneyStore,
        workflow_ids: WorkflowIds,
        pipelines: PipelineCache,
        *,
        clock: Callable[[], datetime],
        lock_ttl: float = LOCK_TTL_SECONDS,
    ) -> None:
        self.gateway = gateway
        self.redis = client
        self.journeys = journeys
        self.workflow_ids = workflow_ids
        self.pipelines = pipelines
        self.lead_statuses = LeadStatusesAtStart(client)
        self.clock = clock
        self.lock_ttl = lock_ttl

    # ----------------------------------------------------------------- what may mean sales is back

    def deal_open(self, run: HandoffRun, deal_id: str, rules: NurtureRules) -> None:
        """A deal is in an open stage now: its contacts that are recycled may have come back."""
        if not (rules.came_back.new_open_deal or rules.came_back.reopened_deal):
            return
        contact_ids = self.gateway.associated_ids(ObjectType.DEAL, deal_id, ObjectType.CONTACT)
        self.settle(run, {c: SalesSignals(open_deals=(deal_id,)) for c in contact_ids}, rules)

    def contact_seen(self, run: HandoffRun, contact: CrmObject, rules: NurtureRules) -> None:
        """A contact read for its lead handoff and found not unqualified (a lifecycle stage or lead
        status change, or the sweep sending it): when it is recycled, its deals are read too, so
        every trigger is judged on what HubSpot shows now."""
        if not self.recycled([contact.id]):
            return
        self.settle(run, self.signals_for([contact], rules), rules)

    def signals_for(self, contacts: Sequence[CrmObject], rules: NurtureRules) -> dict[str, SalesSignals]:
        """Each contact's stage, status and open deals: one association read and one deal read for
        all of them (plus the pipelines, cached)."""
        by_contact = (
            self.gateway.batch_associated_ids(ObjectType.CONTACT, [c.id for c in contacts], ObjectType.DEAL)
            if contacts
            else {}
        )
        deal_ids = sorted({d for ids in by_contact.values() for d in ids})
        deals = (
            self.gateway.batch_read(ObjectType.DEAL, deal_ids, ("dealstage", "pipeline")) if deal_ids else []
        )
        stages = self.pipelines.catalog(rules.deals) if deals else None
        open_ids = {
            d.id
            for d in deals
            if stages is not None and stages.status(d.get("pipeline"), d.get("dealstage")) is DealStatus.OPEN
        }
        return {
            c.id: SalesSignals(
                lifecycle_stage=c.get(LIFECYCLE_PROPERTY),
                lead_status=c.get(rules.leads.status_property) or "",
                open_deals=tuple(d for d in by_contact.get(c.id, ()) if d in open_ids),
            )
            for c in contacts
        }

    def came_back_now(
        self, journeys: Mapping[str, Journey], signals: Mapping[str, SalesSignals], rules: NurtureRules
    ) -> dict[str, str]:
        """contact id -> how it came back, for those of these recycled contacts that did (no write
        to HubSpot; a first sighting of a lead status is kept, see `_lead_statuses_at_start`)."""
        starts = self._lead_statuses_at_start(journeys, signals)
        found: dict[str, str] = {}
        for contact_id, journey in journeys.items():
            how = came_back_how(
                journey,
                rules.came_back,
                signals[contact_id],
                stage_set_by_handoff=_stage_set_by_handoff(rules, journey),
                lead_status_at_start=starts.get(contact_id),
            )
            if how is not None:
                found[contact_id] = how
        return found

    def recycled(self, contact_ids: Sequence[str]) -> list[str]:
        """Those of these contacts that are in a recycled episode now (one Redis read)."""
        return [
            c
            for c, j in self.journeys.load(list(contact_ids)).items()
            if j.episode.state is JourneyState.RECYCLED
        ]

    # ----------------------------------------------------------------- deciding and leaving

    def settle(self, run: HandoffRun, signals: Mapping[str, SalesSignals], rules: NurtureRules) -> list[str]:
        """Take the contacts that came back out of their nurtures; returns their ids."""
        recycled = self.recycled(list(signals))
        if not recycled or run.dry_run:
            return []
        with ContactLocks(self.redis, recycled, ttl=self.lock_ttl) as locks:
            journeys = {
                c: j
                for c, j in self.journeys.load(recycled).items()
                if j.episode.state is JourneyState.RECYCLED
            }
            at = self.clock().isoformat(timespec="seconds")
            steps = {
                contact_id: on_came_back(journeys[contact_id], at=at, how=how)
                for contact_id, how in self.came_back_now(journeys, signals, rules).items()
            }
            if not steps:
                return []
            locks.ensure_held()
            failed = self._leave(run, steps)
            back = {c: s for c, s in steps.items() if c not in failed}
            locks.ensure_held()
            self.journeys.save([s.journey for s in back.values()], previous=journeys)
        for contact_id, step in back.items():
            result = run.contact(contact_id)
            result.outcome = ContactOutcome.CAME_BACK
            result.why = step.journey.episode.came_back_how or ""
        return sorted(back)

    def _lead_statuses_at_start(
        self, journeys: Mapping[str, Journey], signals: Mapping[str, SalesSignals]
    ) -> dict[str, str]:
        """The recorded statuses; an episode without one (started before they were recorded) takes
        the status seen now, so that only a later change counts."""
        starts = self.lead_statuses.load(journeys)
        first_seen = {
            c: (j.episode.number, signals[c].lead_status or "")
            for c, j in journeys.items()
            if c not in starts and signals[c].lead_status is not None
        }
        self.lead_statuses.record(first_seen)
        return starts

    def _leave(self, run: HandoffRun, steps: Mapping[str, JourneyStep]) -> set[str]:
        """Out of every nurture the steps leave; returns the contacts that failed for good."""
        failed: set[str] = set()
        by_key: dict[str, list[str]] = {}
        for contact_id, step in steps.items():
            for key in step.leave:
                by_key.setdefault(key, []).append(contact_id)
        nurtures = {key: Nurture.from_key(key) for key in by_key}
        emails = self._emails(
            [c for k, ids in by_key.items() if nurtures[k].method is NurtureMethod.WORKFLOW for c in ids]
        )
        clears: dict[str, dict[str, str]] = {}
        for key, contact_ids in by_key.items():
            nurture = nurtures[key]
            if nurture.method is NurtureMethod.PROPERTY and nurture.property_name:
                for contact_id in contact_ids:
                    clears.setdefault(contact_id, {})[nurture.property_name] = ""
            elif nurture.method is NurtureMethod.LIST and nurture.list_id:
                failed |= self._off_list(run, nurture, contact_ids)
            elif nurture.method is NurtureMethod.WORKFLOW and nurture.workflow_id:
                for contact_id in contact_ids:
                    if not self._unenroll(run, nurture, contact_id, emails.get(contact_id, "")):
                        failed.add(contact_id)
        if clears:
            result = self.gateway.batch_update_contacts(clears)
            for error in result.errors:
                for contact_id in error.ids or list(clears):
                    run.fail(contact_id, f"clearing the nurture property: {error.message}")
                    failed.add(contact_id)
        for contact_id, step in steps.items():
            if contact_id not in failed:
                run.left.extend({"contact": contact_id, "nurture": key} for key in step.leave)
        return failed

    def _emails(self, contact_ids: Sequence[str]) -> dict[str, str]:
        if not contact_ids:
            return {}
        contacts = self.gateway.batch_read(ObjectType.CONTACT, sorted(set(contact_ids)), [EMAIL_PROPERTY])
        return {c.id: (c.get(EMAIL_PROPERTY) or "").strip() for c in contacts}

    def _off_list(self, run: HandoffRun, nurture: Nurture, contact_ids: Sequence[str]) -> set[str]:
        return set() if leave_list(self.gateway, run, nurture, contact_ids) else set(contact_ids)

    def _unenroll(self, run: HandoffRun, nurture: Nurture, contact_id: str, email: str) -> bool:
        if not email:
            # No email, no enrollment by email either: nothing HubSpot could still send.
            return True
        return unenroll(self.gateway, self.workflow_ids, run, nurture, contact_id, email)


def _stage_set_by_handoff(rules: NurtureRules, journey: Journey) -> str | None:
    reason = rules.reason_for(journey.episode.reason)
    return reason.lifecycle_stage if reason is not None else rules.recycling.default_lifecycle_stage
