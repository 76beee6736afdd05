"""The read phase: what HubSpot and the ledger say now, gathered before anything is decided.

Always the current state, never the event's. First the record itself (`FactReader.sight`): gone,
in a stage no pipeline lists, not lost, or lost. For a lost record with a known reason, then
everything the plan is decided on (`FactReader.gather`), in one frozen `HandoffFacts`: the loss,
the reason, the contacts, their other deals, the pipelines' stages and the steps already done.

Reads are batched: a deal's contacts in one call, all their other deals in one association read
and one deal read, however many contacts there are. And only what the plan can use is read: a
contact the ledger or its journey settles (`rules.settled_unread`) is not read at all, and other
deals only for the contacts they can hold back (`rules.other_deals_matter`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from handoff_worker.domain.journey import Journey, owed_by
from handoff_worker.domain.models import CrmObject, ObjectType, RecordKind
from handoff_worker.domain.nurture import NurtureMethod, NurtureRules, ReasonRule
from handoff_worker.domain.rules import (
    EMAIL_PROPERTY,
    LIFECYCLE_PROPERTY,
    DealStatus,
    StageCatalog,
    batched_nurtures,
    is_unqualified,
    other_deals_matter,
    settled_unread,
)
from handoff_worker.errors import NotFoundError
from handoff_worker.handoff.leaving import leave_step
from handoff_worker.handoff.ledger import DONE, LIFECYCLE_STEP, Loss, LossSignature, step_field
from handoff_worker.handoff.run_record import Outcome
from handoff_worker.handoff.stages import PipelineCache
from handoff_worker.hubspot.protocol import HubSpotGateway

DEAL_PROPERTIES = ("dealname", "dealstage", "pipeline", "hubspot_owner_id", "closedate", "createdate")
OTHER_DEAL_PROPERTIES = ("dealstage", "pipeline")
CONTACT_PROPERTIES = (EMAIL_PROPERTY, LIFECYCLE_PROPERTY, "firstname", "lastname", "hubspot_owner_id")
# What a deal's status other than lost means for this run.
NOT_LOST_OUTCOMES = {
    DealStatus.OPEN: Outcome.DEAL_OPEN,
    DealStatus.WON: Outcome.DEAL_WON,
    DealStatus.CLOSED_OTHER: Outcome.DEAL_CLOSED_OTHER,
}


# ----------------------------------------------------------------------------- the record itself


@dataclass(frozen=True)
class NotFound:
    """Deleted in HubSpot (or never there)."""


@dataclass(frozen=True)
class UnknownStage:
    """Even freshly read pipelines do not list the deal's stage: nothing can be decided."""

    error: str


@dataclass(frozen=True)
class NotLost:
    outcome: Outcome
    record: CrmObject | None = None  # as read: a deal open again, a contact sales may work again


@dataclass(frozen=True)
class LostRecord:
    """A deal or lead seen lost: what its loss, its reason and its owner's task are made of."""

    kind: RecordKind
    record: CrmObject
    fingerprint: str  # tells one closing from the next (a deal's closedate); see ledger.py
    raw_reason: str | None
    name: str  # shown in the owner's task subject
    owner_id: str | None
    stages: StageCatalog | None = None  # a deal's: the catalog its status was decided on
    stage: str = ""  # a deal's stage id, a lead's status: part of the loss's signature
    opened_at: datetime | None = None  # a deal's createdate (see domain.journey.LossSeen)

    @property
    def signature(self) -> LossSignature:
        return LossSignature(self.stage, self.fingerprint, self.raw_reason or "")


Sighting = NotFound | UnknownStage | NotLost | LostRecord


def signature_properties(kind: RecordKind, rules: NurtureRules) -> tuple[str, ...]:
    """The properties a record's `loss_signature` is read from (a sweep asks its search for them)."""
    if kind is RecordKind.DEAL:
        return ("dealstage", "closedate", rules.deals.reason_property)
    return (rules.leads.status_property, rules.leads.reason_property)


def loss_signature(kind: RecordKind, record: CrmObject, rules: NurtureRules) -> LossSignature:
    """A lost record's signature as the engine records it when the loss completes."""
    if kind is RecordKind.DEAL:
        return LossSignature(
            record.get("dealstage") or "",
            record.get("closedate") or "",
            record.get(rules.deals.reason_property) or "",
        )
    leads = rules.leads
    return LossSignature(record.get(leads.status_property) or "", "", record.get(leads.reason_property) or "")


# ----------------------------------------------------------------------------- everything else


@dataclass(frozen=True)
class HandoffFacts:
    """Everything the plan for one loss is decided on, read once."""

    loss: Loss
    reason: ReasonRule
    deal_id: str | None  # the lost deal (None for an unqualified lead)
    contacts: tuple[CrmObject, ...]
    other_deals: Mapping[str, Sequence[CrmObject]]  # contact id -> its other deals
    stages: StageCatalog
    steps: Mapping[str, str]  # what the ledger says this loss has done
    journeys: Mapping[str, Journey] = field(default_factory=dict)  # contact id -> its journey
    opened_at: datetime | None = None  # when the lost deal was created

    @property
    def nurture_keys(self) -> list[str]:
        return [n.key for n in batched_nurtures(self.reason)] if self.reason.recycle else []

    def steps_owed(self, contact_id: str) -> list[str]:
        """The ledger steps (besides lifecycle) this loss owes the contact: the nurtures its journey
        has it enter and leave for this loss, or (before it was taken in) every nurture of the reason."""
        journey = self.journeys.get(contact_id)
        owed = owed_by(journey, self.loss.loss_id) if journey is not None else None
        if owed is None:
            return self.nurture_keys
        enter, leave = owed
        batched = {n.key for n in batched_nurtures(self.reason)} if self.reason.recycle else set()
        return [k for k in enter if k in batched] + [
            leave_step(k) for k in leave if not k.startswith(f"{NurtureMethod.PROPERTY.value}:")
        ]

    @property
    def lifecycle_done(self) -> frozenset[str]:
        return frozenset(
            c.id for c in self.contacts if self.steps.get(step_field(c.id, LIFECYCLE_STEP)) == DONE
        )

    @property
    def fully_done(self) -> frozenset[str]:
        return frozenset(
            cid
            for cid in self.lifecycle_done
            if all(self.steps.get(step_field(cid, key)) == DONE for key in self.steps_owed(cid))
        )


_Gathered = tuple[str | None, Sequence[CrmObject], dict[str, list[CrmObject]], StageCatalog]
_Gather = Callable[[LostRecord, "HandoffFacts", NurtureRules], _Gathered]


class FactReader:
    def __init__(self, gateway: HubSpotGateway, pipelines: PipelineCache) -> None:
        self.gateway = gateway
        self.pipelines = pipelines
        self._sight: dict[RecordKind, Callable[[str, NurtureRules], Sighting]] = {
            RecordKind.DEAL: self._sight_deal,
            RecordKind.CONTACT: self._sight_lead,
        }
        self._gather: dict[RecordKind, _Gather] = {
            RecordKind.DEAL: self._gather_for_deal,
            RecordKind.CONTACT: self._gather_for_lead,
        }

    def sight(self, kind: RecordKind, object_id: str, rules: NurtureRules) -> Sighting:
        return self._sight[kind](object_id, rules)

    def contact_ids(self, lost: LostRecord) -> list[str]:
        """The contacts a loss is about: a deal's associated contacts, or the lead itself. Read
        first and alone, so their locks can be taken before anything about them is read."""
        if lost.kind is RecordKind.CONTACT:
            return [lost.record.id]
        return self.gateway.associated_ids(ObjectType.DEAL, lost.record.id, ObjectType.CONTACT)

    def gather(
        self,
        lost: LostRecord,
        loss: Loss,
        reason: ReasonRule,
        rules: NurtureRules,
        steps: Mapping[str, str],
        contact_ids: Sequence[str],
        journeys: Mapping[str, Journey],
    ) -> HandoffFacts:
        # What the ledger and the journeys settle is known before any read: contacts stand in by id
        # alone until read, and a contact the plan settles unread (see rules.settled_unread) stays so.
        unread = HandoffFacts(
            loss,
            reason,
            lost.record.id if lost.kind is RecordKind.DEAL else None,
            tuple(CrmObject(cid) for cid in contact_ids),
            {},
            lost.stages or StageCatalog({}, {}, {}, {}),
            steps,
            journeys,
            lost.opened_at,
        )
        deal_id, contacts, other_deals, stages = self._gather[lost.kind](lost, unread, rules)
        return replace(
            unread, deal_id=deal_id, contacts=tuple(contacts), other_deals=other_deals, stages=stages
        )

    # ----------------------------------------------------------------- deals

    def _sight_deal(self, deal_id: str, rules: NurtureRules) -> Sighting:
        reason_property = rules.deals.reason_property
        try:
            deal = self.gateway.get_deal(deal_id, [*DEAL_PROPERTIES, reason_property])
        except NotFoundError:
            return NotFound()
        stages, status = self._deal_status(deal, rules)
        if status is DealStatus.UNKNOWN:
            return UnknownStage(
                f"deal {deal.id} is in stage {deal.get('dealstage')!r} of pipeline "
                f"{deal.get('pipeline')!r}, which HubSpot's pipelines API does not list; check the "
                "pipeline settings, then replay"
            )
        if status is not DealStatus.LOST:
            return NotLost(NOT_LOST_OUTCOMES[status], deal)
        return LostRecord(
            RecordKind.DEAL,
            deal,
            fingerprint=deal.get("closedate") or "",
            raw_reason=deal.get(reason_property),
            name=deal.get("dealname") or f"deal {deal.id}",
            owner_id=deal.get("hubspot_owner_id"),
            stages=stages,
            stage=deal.get("dealstage") or "",
            opened_at=_moment(deal.get("createdate")),
        )

    def _deal_status(self, deal: CrmObject, rules: NurtureRules) -> tuple[StageCatalog, DealStatus]:
        stages = self.pipelines.catalog(rules.deals)
        status = stages.status(deal.get("pipeline"), deal.get("dealstage"))
        if status is DealStatus.UNKNOWN:
            # A stage added since the cache was filled: read the pipelines again, once.
            stages = self.pipelines.catalog(rules.deals, refresh=True)
            status = stages.status(deal.get("pipeline"), deal.get("dealstage"))
        return stages, status

    def _gather_for_deal(self, lost: LostRecord, unread: HandoffFacts, rules: NurtureRules) -> _Gathered:
        deal = lost.record
        fully_done = unread.fully_done
        wanted = [
            c.id
            for c in unread.contacts
            if settled_unread(
                c.id, unread.reason, rules, unread.journeys.get(c.id), fully_done=c.id in fully_done
            )
            is None
        ]
        # The lead status too, in the same read: kept when an episode starts (see reengagement.py).
        read = (
            self.gateway.batch_read(
                ObjectType.CONTACT, wanted, [*CONTACT_PROPERTIES, rules.leads.status_property]
            )
            if wanted
            else []
        )
        # A contact settled unread keeps its id-only stand-in: the plan looks no further at it. One
        # asked for and not answered (deleted since) is left out, as before.
        by_id = {c.id: c for c in read}
        wanted_ids = set(wanted)
        contacts = [
            by_id[c.id] if c.id in wanted_ids else c
            for c in unread.contacts
            if c.id in by_id or c.id not in wanted_ids
        ]
        other_deals = self._other_deals(read, unread, rules, exclude=deal.id)
        assert lost.stages is not None
        return deal.id, contacts, other_deals, self._stages_for(lost.stages, other_deals, rules)

    def _other_deals(
        self, contacts: Sequence[CrmObject], unread: HandoffFacts, rules: NurtureRules, *, exclude: str
    ) -> dict[str, list[CrmObject]]:
        """Each contact's other deals, for the contacts whose plan they can change (see
        rules.other_deals_matter): ONE batch association read and ONE batch deal read."""
        lifecycle_done = unread.lifecycle_done
        asked = [
            c.id
            for c in contacts
            if other_deals_matter(c, unread.reason, rules, lifecycle_done=c.id in lifecycle_done)
        ]
        if not asked:
            return {}
        by_contact = self.gateway.batch_associated_ids(ObjectType.CONTACT, asked, ObjectType.DEAL)
        wanted = sorted({d for ids in by_contact.values() for d in ids} - {exclude})
        deals = self.gateway.batch_read(ObjectType.DEAL, wanted, OTHER_DEAL_PROPERTIES) if wanted else []
        by_id = {d.id: d for d in deals}
        return {cid: [by_id[d] for d in ids if d in by_id] for cid, ids in by_contact.items()}

    # ----------------------------------------------------------------- unqualified leads

    def _sight_lead(self, contact_id: str, rules: NurtureRules) -> Sighting:
        leads = rules.leads
        try:
            contact = self.gateway.get_contact(
                contact_id, [*CONTACT_PROPERTIES, leads.status_property, leads.reason_property]
            )
        except NotFoundError:
            return NotFound()
        if not is_unqualified(contact.properties, leads):
            return NotLost(Outcome.NOT_UNQUALIFIED, contact)
        return LostRecord(
            RecordKind.CONTACT,
            contact,
            fingerprint="",
            raw_reason=contact.get(leads.reason_property),
            name=_person_name(contact),
            owner_id=contact.get("hubspot_owner_id"),
            stage=contact.get(leads.status_property) or "",
        )

    def _gather_for_lead(self, lost: LostRecord, unread: HandoffFacts, rules: NurtureRules) -> _Gathered:
        contact = lost.record  # read already, by `sight`
        settled = settled_unread(
            contact.id,
            unread.reason,
            rules,
            unread.journeys.get(contact.id),
            fully_done=contact.id in unread.fully_done,
        )
        other_deals: dict[str, list[CrmObject]] = {}
        if settled is None and other_deals_matter(
            contact, unread.reason, rules, lifecycle_done=contact.id in unread.lifecycle_done
        ):
            deal_ids = self.gateway.associated_ids(ObjectType.CONTACT, contact.id, ObjectType.DEAL)
            deals = (
                self.gateway.batch_read(ObjectType.DEAL, deal_ids, OTHER_DEAL_PROPERTIES) if deal_ids else []
            )
            other_deals = {contact.id: deals}
        stages = self._stages_for(self.pipelines.catalog(rules.deals), other_deals, rules)
        return None, [contact], other_deals, stages

    # ----------------------------------------------------------------- shared

    def _stages_for(
        self, stages: StageCatalog, other_deals: dict[str, list[CrmObject]], rules: NurtureRules
    ) -> StageCatalog:
        """The catalog again, re-read (unless just read) when another deal sits in a stage it lacks."""
        deals = (d for ds in other_deals.values() for d in ds)
        if any(stages.status(d.get("pipeline"), d.get("dealstage")) is DealStatus.UNKNOWN for d in deals):
            return self.pipelines.catalog(rules.deals, refresh=True, eager=False)
        return stages


def _moment(text: str | None) -> datetime | None:
    """HubSpot's ISO-8601 (or ms-epoch) timestamp; None when missing or unreadable."""
    if not text:
        return None
    try:
        if text.isdigit():
            return datetime.fromtimestamp(int(text) / 1000, tz=UTC)
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _person_name(contact: CrmObject) -> str:
    name = " ".join(p for p in (contact.get("firstname"), contact.get("lastname")) if p)
    return name or contact.get(EMAIL_PROPERTY) or f"contact {contact.id}"
