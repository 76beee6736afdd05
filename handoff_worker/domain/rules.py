"""The handoff's decisions, as pure functions of data, config and `now`.

Nothing here reads HubSpot, Redis or the clock: the engine gathers the facts, these functions
decide, and the engine carries out the resulting `HandoffPlan`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from handoff_worker.domain.journey import (
    Journey,
    JourneyState,
    LossDecision,
    LossSeen,
    on_loss,
    repeated_decision,
)
from handoff_worker.domain.models import CrmObject, Pipeline
from handoff_worker.domain.nurture import (
    DealRules,
    LeadRules,
    Nurture,
    NurtureMethod,
    NurtureRules,
    ReasonRule,
)

# HubSpot's lifecycle stages from earliest to latest. `other` and portal-made stages are outside
# this order: moving to or from them always takes a clear then a set.
LIFECYCLE_ORDER: tuple[str, ...] = (
    "subscriber",
    "lead",
    "marketingqualifiedlead",
    "salesqualifiedlead",
    "opportunity",
    "customer",
    "evangelist",
)
LIFECYCLE_PROPERTY = "lifecyclestage"
EMAIL_PROPERTY = "email"


# --------------------------------------------------------------------------- stages


class DealStatus(StrEnum):
    OPEN = "open"
    WON = "won"  # closed with a probability above 0
    LOST = "lost"
    CLOSED_OTHER = "closed_other"  # closed-lost by HubSpot but excluded in the YAML
    UNKNOWN = "unknown"  # pipeline or stage id not in the pipelines we know


@dataclass(frozen=True)
class StageCatalog:
    """What each stage id of each pipeline means, derived once from the pipelines API."""

    lost: Mapping[str, frozenset[str]]
    closed: Mapping[str, frozenset[str]]
    # HubSpot's own closed-lost stages, so a stage the YAML excludes is not mistaken for a win.
    closed_at_zero: Mapping[str, frozenset[str]]
    known: Mapping[str, frozenset[str]]

    def status(self, pipeline_id: str | None, stage_id: str | None) -> DealStatus:
        if not pipeline_id or not stage_id or stage_id not in self.known.get(pipeline_id, frozenset()):
            return DealStatus.UNKNOWN
        if stage_id in self.lost.get(pipeline_id, frozenset()):
            return DealStatus.LOST
        if stage_id not in self.closed.get(pipeline_id, frozenset()):
            return DealStatus.OPEN
        if stage_id in self.closed_at_zero.get(pipeline_id, frozenset()):
            return DealStatus.CLOSED_OTHER
        return DealStatus.WON


def lost_stage_ids(pipelines: Sequence[Pipeline], deal_rules: DealRules) -> dict[str, frozenset[str]]:
    """Per pipeline id: HubSpot's closed-lost stages plus the YAML's extra ones, minus excluded."""
    lost: dict[str, frozenset[str]] = {}
    for pipeline in pipelines:
        by_metadata = {stage.id for stage in pipeline.stages if stage.is_closed_lost}
        extra = deal_rules.extra_lost_stage_ids.get(pipeline.id, frozenset())
        excluded = deal_rules.excluded_stage_ids.get(pipeline.id, frozenset())
        lost[pipeline.id] = frozenset((by_metadata | extra) - excluded)
    return lost


def known_stage_ids(pipelines: Sequence[Pipeline]) -> dict[str, frozenset[str]]:
    return {pipeline.id: frozenset(stage.id for stage in pipeline.stages) for pipeline in pipelines}


def stage_catalog(pipelines: Sequence[Pipeline], deal_rules: DealRules) -> StageCatalog:
    return StageCatalog(
        lost=lost_stage_ids(pipelines, deal_rules),
        closed={p.id: frozenset(s.id for s in p.stages if s.is_closed) for p in pipelines},
        closed_at_zero={p.id: frozenset(s.id for s in p.stages if s.is_closed_lost) for p in pipelines},
        known=known_stage_ids(pipelines),
    )


def is_unqualified(contact_properties: Mapping[str, str | None], lead_rules: LeadRules) -> bool:
    if not lead_rules.enabled:
        return False
    status = contact_properties.get(lead_rules.status_property) or ""
    return status.strip().casefold() == lead_rules.unqualified_value.strip().casefold()


# --------------------------------------------------------------------------- contacts


class SkipReason(StrEnum):
    OPEN_DEAL = "open_deal"  # still on another open deal: sales is working it
    CUSTOMER = "customer"  # a customer (lifecycle or a won deal): never moved back
    ALREADY_RECYCLED = "already_recycled"  # every step for this loss is done
    NO_EMAIL = "no_email"  # a workflow nurture enrolls by email and there is none
    NOT_RECYCLED = "not_recycled"  # the reason leaves contacts alone
    ARCHIVED = "archived"
    IN_NURTURE = "in_nurture"  # its journey already has it in a nurture this episode


@dataclass(frozen=True)
class Eligibility:
    eligible: bool
    skip_reason: SkipReason | None = None
    detail: str = ""


ELIGIBLE = Eligibility(True)


def contact_eligibility(
    contact: CrmObject,
    *,
    deal_id: str | None,
    other_deals: Sequence[CrmObject],
    stages: StageCatalog,
    rules: NurtureRules,
    needs_email: bool,
    already_recycled_for_deal: bool,
) -> Eligibility:
    """May this contact be handed back to marketing? `other_deals` may include `deal_id` itself.

    What the contact itself says is asked first, its other deals last: a contact ineligible on its
    own is so whatever its deals are, and their read can be spared (see `other_deals_matter`)."""
    if already_recycled_for_deal:
        return Eligibility(False, SkipReason.ALREADY_RECYCLED, "every step for this loss is done")
    own = _own_eligibility(contact, rules, needs_email)
    if not own.eligible:
        return own
    recycling = rules.recycling
    for deal in other_deals:
        if deal.id == deal_id:
            continue
        status = stages.status(deal.get("pipeline"), deal.get("dealstage"))
        if status is DealStatus.WON and recycling.protect_customers:
            return Eligibility(False, SkipReason.CUSTOMER, f"deal {deal.id} is won")
        # A deal in a stage we cannot place is treated as open: never recycle on a guess.
        if status in {DealStatus.OPEN, DealStatus.UNKNOWN} and recycling.skip_contacts_with_open_deals:
            return Eligibility(False, SkipReason.OPEN_DEAL, f"deal {deal.id} is {status.value}")
    return ELIGIBLE


def _own_eligibility(contact: CrmObject, rules: NurtureRules, needs_email: bool) -> Eligibility:
    """What the contact's own properties say, whatever its other deals are."""
    if contact.archived:
        return Eligibility(False, SkipReason.ARCHIVED, "the contact is archived")
    recycling = rules.recycling
    stage = (contact.get(LIFECYCLE_PROPERTY) or "").strip()
    if recycling.protect_customers and stage in recycling.customer_lifecycle_stages:
        return Eligibility(False, SkipReason.CUSTOMER, f"lifecycle stage is {stage}")
    if needs_email and not (contact.get(EMAIL_PROPERTY) or "").strip():
        return Eligibility(False, SkipReason.NO_EMAIL, "a workflow nurture enrolls by email")
    return ELIGIBLE


# --------------------------------------------------------------------------- lifecycle


class LifecycleWrite(StrEnum):
    NONE = "none"  # already there, or the reason leaves the stage alone
    SET = "set"  # forward (or from empty): HubSpot accepts a plain write
    CLEAR_THEN_SET = "clear_then_set"  # backward or outside the order: two separate requests


def target_lifecycle(reason_rule: ReasonRule, rules: NurtureRules) -> str | None:
    if reason_rule.lifecycle_stage:
        return reason_rule.lifecycle_stage
    return rules.recycling.default_lifecycle_stage if reason_rule.recycle else None


def lifecycle_writes(current_stage: str | None, target: str | None) -> LifecycleWrite:
    current = (current_stage or "").strip()
    if not target or current == target:
        return LifecycleWrite.NONE
    if not current:
        return LifecycleWrite.SET  # an empty stage takes any value
    if current in LIFECYCLE_ORDER and target in LIFECYCLE_ORDER:
        forward = LIFECYCLE_ORDER.index(target) > LIFECYCLE_ORDER.index(current)
        return LifecycleWrite.SET if forward else LifecycleWrite.CLEAR_THEN_SET
    # `other` or a portal's own stage: its place is unknown, so HubSpot may refuse a plain write.
    return LifecycleWrite.CLEAR_THEN_SET


# --------------------------------------------------------------------------- owner tasks


def owner_task_due(waiting_since: datetime, sla_hours: float) -> datetime:
    """When a missing reason is due, and with it every task that asks for it."""
    return waiting_since + timedelta(hours=sla_hours)


def needs_escalation(
    waiting_since: datetime, now: datetime, sla_hours: float, already_escalated: bool
) -> bool:
    return not already_escalated and now - waiting_since >= timedelta(hours=sla_hours)


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class ContactAction:
    """What to do to one contact. `set_properties` go out in ONE batch update (after the clear,
    when there is one): lifecycle, markers, property nurtures entered and cleared together."""

    contact_id: str
    email: str | None
    lifecycle_write: LifecycleWrite
    target_stage: str | None
    set_properties: Mapping[str, str]
    nurtures: tuple[Nurture, ...]  # workflow and list nurtures to enter, after the set
    resumed: bool = False  # lifecycle already done for this loss: only missing nurtures remain
    # The stage read before the handoff: written back if a clear went through and no set did.
    previous_stage: str | None = None
    # Workflow and list nurtures to leave (the journey switched or ended them), before entering.
    leave: tuple[Nurture, ...] = ()


@dataclass(frozen=True)
class ContactSkip:
    contact_id: str
    reason: SkipReason
    detail: str = ""


@dataclass(frozen=True)
class HandoffPlan:
    reason: ReasonRule
    actions: tuple[ContactAction, ...]
    skipped: tuple[ContactSkip, ...]
    # Journeys this loss moves: saved (under the contacts' locks) before anything is carried out.
    journeys: tuple[Journey, ...] = ()


def batched_nurtures(reason: ReasonRule) -> tuple[Nurture, ...]:
    """Workflow and list nurtures: those carried out after the lifecycle write, each a ledger step."""
    return tuple(n for n in reason.nurtures if n.method is not NurtureMethod.PROPERTY)


def needs_email(reason: ReasonRule) -> bool:
    return reason.recycle and any(n.method is NurtureMethod.WORKFLOW for n in reason.nurtures)


def marker_values(
    rules: NurtureRules, reason: ReasonRule, deal_id: str | None, now: datetime
) -> dict[str, str]:
    markers = {
        rules.markers.recycled_at: now.isoformat(timespec="seconds"),
        rules.markers.reason: reason.label,
    }
    if deal_id:
        markers[rules.markers.source_deal] = deal_id
    if reason.follow_up_after_days:
        markers[rules.markers.follow_up_on] = follow_up_date(now, reason.follow_up_after_days)
    return markers


def follow_up_date(now: datetime, days: int) -> str:
    """The day, in UTC, `days` after `now`, as HubSpot's date properties take it (YYYY-MM-DD):
    they hold a day, stored as its midnight UTC, and refuse any other time of day."""
    return (now.astimezone(UTC).date() + timedelta(days=days)).isoformat()


def loss_seen(loss_id: str, reason: ReasonRule, opened_at: datetime | None = None) -> LossSeen:
    """The loss as the contact's journey sees it."""
    keys = tuple(n.key for n in reason.nurtures) if reason.recycle else ()
    return LossSeen(loss_id, reason.label, keys, reason.recycle, opened_at)


def settled_unread(
    contact_id: str, reason: ReasonRule, rules: NurtureRules, journey: Journey | None, *, fully_done: bool
) -> ContactSkip | None:
    """The skip decided for a contact before anything about it is read from HubSpot, or None when
    the plan needs its properties. A contact settled here is never read: `build_plan` asks this
    first and looks no further at it."""
    if fully_done:
        return ContactSkip(contact_id, SkipReason.ALREADY_RECYCLED, "every step for this loss is done")
    # A reason that never nurtures still ends a nurture running for the contact (see journey.py).
    ends_nurture = journey is not None and journey.episode.state is JourneyState.RECYCLED
    if not reason.recycle and target_lifecycle(reason, rules) is None and not ends_nurture:
        return ContactSkip(contact_id, SkipReason.NOT_RECYCLED, f"reason {reason.label!r}")
    return None


def other_deals_matter(
    contact: CrmObject, reason: ReasonRule, rules: NurtureRules, *, lifecycle_done: bool
) -> bool:
    """Whether the contact's other deals can change its plan, so that they are worth reading.

    Not when its lifecycle step is done (eligibility is not asked again), nor for a reason that
    leaves the stage alone and nurtures nobody (it only ends a running nurture), nor when the YAML
    checks neither open nor won deals, nor when the contact is ineligible on its own."""
    if lifecycle_done:
        return False
    if not reason.recycle and target_lifecycle(reason, rules) is None:
        return False
    recycling = rules.recycling
    if not (recycling.skip_contacts_with_open_deals or recycling.protect_customers):
        return False
    return _own_eligibility(contact, rules, needs_email(reason)).eligible


def build_plan(
    *,
    reason: ReasonRule,
    rules: NurtureRules,
    deal_id: str | None,
    contacts: Sequence[CrmObject],
    other_deals_by_contact: Mapping[str, Sequence[CrmObject]],
    stages: StageCatalog,
    lifecycle_done: frozenset[str],
    fully_done: frozenset[str],
    now: datetime,
    loss_id: str = "",
    journeys: Mapping[str, Journey] | None = None,
    opened_at: datetime | None = None,
) -> HandoffPlan:
    """Which contacts to hand back (and how), which to skip (and why), for one loss.

    `lifecycle_done`: contacts whose lifecycle step this loss already did (only nurtures may be
    missing; their eligibility is not asked again, so a half-done contact is always finished).
    `fully_done`: contacts with every step done. `journeys`: each contact's journey (a contact
    missing from it has none yet); what this loss does to an eligible contact is its journey's
    `on_loss`, under `rules.recycling.second_loss`; `opened_at` is when the lost deal was created.
    """
    target = target_lifecycle(reason, rules)
    seen = loss_seen(loss_id, reason, opened_at)
    known = journeys or {}
    actions: list[ContactAction] = []
    skipped: list[ContactSkip] = []
    moved: list[Journey] = []
    for contact in contacts:
        journey = known.get(contact.id) or Journey(contact.id)
        settled = settled_unread(contact.id, reason, rules, journey, fully_done=contact.id in fully_done)
        if settled is not None:
            skipped.append(settled)
            continue
        if contact.id not in lifecycle_done:
            verdict = contact_eligibility(
                contact,
                deal_id=deal_id,
                other_deals=other_deals_by_contact.get(contact.id, ()),
                stages=stages,
                rules=rules,
                needs_email=needs_email(reason),
                already_recycled_for_deal=False,
            )
            if not verdict.eligible:
                assert verdict.skip_reason is not None
                skipped.append(ContactSkip(contact.id, verdict.skip_reason, verdict.detail))
                continue
        step = on_loss(journey, seen, rules.recycling.second_loss, now.isoformat(timespec="seconds"))
        if step.changed:
            moved.append(step.journey)
        decision = step.decision
        if decision is LossDecision.REPEAT:
            decision = repeated_decision(journey, loss_id) or decision
        if decision in {LossDecision.KEEP, LossDecision.SAME_REASON}:
            episode = step.journey.episode
            skipped.append(
                ContactSkip(
                    contact.id,
                    SkipReason.IN_NURTURE,
                    f"already in the {episode.reason!r} nurture since {episode.since} "
                    f"(second loss: {decision.value})",
                )
            )
            continue
        enter = _nurtures_named(reason, step.enter)
        leave = tuple(Nurture.from_key(key) for key in step.leave)
        if contact.id in lifecycle_done:
            actions.append(_resumed_action(contact, enter, leave))
            continue
        actions.append(_fresh_action(contact, reason, rules, target, enter, leave, deal_id, now))
    return HandoffPlan(reason, tuple(actions), tuple(skipped), tuple(moved))


def _nurtures_named(reason: ReasonRule, keys: Sequence[str]) -> tuple[Nurture, ...]:
    """The reason's nurtures with these keys, in the YAML's order."""
    wanted = set(keys)
    return tuple(n for n in reason.nurtures if n.key in wanted) if reason.recycle else ()


def _batched(nurtures: Sequence[Nurture]) -> tuple[Nurture, ...]:
    return tuple(n for n in nurtures if n.method is not NurtureMethod.PROPERTY)


def _resumed_action(
    contact: CrmObject, enter: tuple[Nurture, ...], leave: tuple[Nurture, ...]
) -> ContactAction:
    return ContactAction(
        contact.id,
        contact.get(EMAIL_PROPERTY),
        LifecycleWrite.NONE,
        None,
        {},
        _batched(enter),
        resumed=True,
        leave=_batched(leave),
    )


def _fresh_action(
    contact: CrmObject,
    reason: ReasonRule,
    rules: NurtureRules,
    target: str | None,
    enter: tuple[Nurture, ...],
    leave: tuple[Nurture, ...],
    deal_id: str | None,
    now: datetime,
) -> ContactAction:
    write = lifecycle_writes(contact.get(LIFECYCLE_PROPERTY), target)
    properties: dict[str, str] = {}
    if write is not LifecycleWrite.NONE and target:
        properties[LIFECYCLE_PROPERTY] = target
    # A property nurture is left by clearing its property (unless the entered one sets it again).
    for nurture in leave:
        if nurture.method is NurtureMethod.PROPERTY and nurture.property_name:
            properties[nurture.property_name] = ""
    if reason.recycle:
        properties.update(marker_values(rules, reason, deal_id, now))
        for nurture in enter:
            if nurture.method is NurtureMethod.PROPERTY and nurture.property_name:
                properties[nurture.property_name] = nurture.property_value or ""
    return ContactAction(
        contact.id,
        contact.get(EMAIL_PROPERTY),
        write,
        target,
        properties,
        _batched(enter),
        previous_stage=contact.get(LIFECYCLE_PROPERTY),
        leave=_batched(leave),
    )
