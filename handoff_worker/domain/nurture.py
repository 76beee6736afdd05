"""The marketers' rules once validated: what `nurture_config.load_rules()` returns and the engine reads.

Frozen and pure. The YAML file's shape is in `config/nurture.yaml` and its JSON Schema.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class NurtureMethod(StrEnum):
    WORKFLOW = "workflow"  # legacy enrollment by email, one call per contact
    LIST = "list"  # add to a static list whose membership enrolls (batched)
    PROPERTY = "property"  # set a contact property a workflow's trigger watches (batched)


@dataclass(frozen=True)
class Nurture:
    method: NurtureMethod
    name: str  # what marketers call it; shown in reports
    workflow_id: str | None = None
    list_id: str | None = None
    property_name: str | None = None
    property_value: str | None = None

    @property
    def key(self) -> str:
        """Stable identity for the ledger: the same nurture is never done twice to a contact."""
        target = self.workflow_id or self.list_id or f"{self.property_name}={self.property_value}"
        return f"{self.method.value}:{target}"

    @classmethod
    def from_key(cls, key: str, name: str = "") -> Nurture:
        """The nurture a stored key names, enough to leave it (the YAML may no longer list it)."""
        method_text, _, target = key.partition(":")
        method = NurtureMethod(method_text)
        if method is NurtureMethod.WORKFLOW:
            return cls(method, name or key, workflow_id=target)
        if method is NurtureMethod.LIST:
            return cls(method, name or key, list_id=target)
        property_name, _, value = target.partition("=")
        return cls(method, name or key, property_name=property_name, property_value=value)


@dataclass(frozen=True)
class ReasonRule:
    label: str  # the picklist label marketers see
    value: str  # the option's internal value in HubSpot (defaults to the label)
    recycle: bool  # False: these contacts are not nurtured
    # Lifecycle stage to set: "lead" by default for recycled reasons; for reasons that are not
    # recycled, None means "leave the contact alone" (or e.g. "other").
    lifecycle_stage: str | None
    nurtures: tuple[Nurture, ...] = ()
    # Days after the handoff on which sales should look at the contact again: written as a date
    # in the `follow_up_on` marker. None: no follow-up date.
    follow_up_after_days: int | None = None
    # Who in marketing hears of each episode this reason starts (None: nobody).
    tell_marketing: TellMarketing | None = None


@dataclass(frozen=True)
class TellMarketing:
    """A reason's `tell_marketing:`: once per episode, a HubSpot task for a marketing owner and/or
    a message to the team's chat webhook (`marketing_notices:`)."""

    task_owner_id: str | None = None
    message: bool = False


@dataclass(frozen=True)
class MarketingNotices:
    """Where the messages of `tell_marketing` go (`marketing_notices:` in the YAML)."""

    # The HubSpot account's Hub ID: the contact links in messages need it.
    hub_id: str | None = None
    # The NAME of the environment variable holding the incoming-webhook URL: the URL is a secret.
    webhook_url_env: str | None = None
    # True: one message a day listing the episodes started, instead of one message per contact.
    daily_digest: bool = False


@dataclass(frozen=True)
class DealRules:
    reason_property: str = "closed_lost_reason"
    # Per pipeline id: stage ids to treat as lost although HubSpot's metadata says otherwise, and
    # stage ids never to treat as lost.
    extra_lost_stage_ids: Mapping[str, frozenset[str]] = field(default_factory=dict)
    excluded_stage_ids: Mapping[str, frozenset[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class LeadRules:
    enabled: bool = True
    status_property: str = "hs_lead_status"
    unqualified_value: str = "UNQUALIFIED"
    reason_property: str = "handoff_unqualified_reason"


@dataclass(frozen=True)
class MarkerProperties:
    """Contact properties that tell marketing a lead was recycled, from what and why."""

    recycled_at: str = "handoff_recycled_at"
    reason: str = "handoff_recycle_reason"
    source_deal: str = "handoff_source_deal_id"
    # A date property (no time): set only for reasons with `follow_up_after_days`.
    follow_up_on: str = "handoff_follow_up_date"


@dataclass(frozen=True)
class OwnerTasks:
    sla_hours: float = 24.0
    subject: str = "Add a lost reason to {deal_name}"
    # After the SLA without a reason: escalate once to this owner id (None: no escalation).
    escalation_owner_id: str | None = None
    escalation_subject: str = "Lost reason still missing on {deal_name}"


class SecondLossPolicy(StrEnum):
    """What another loss does to a contact already in a nurture (see domain/journey.py)."""

    KEEP = "keep"  # stay in the current nurture; the later reason is recorded, nothing is sent
    SWITCH = "switch"  # leave the current nurture and enter the later reason's


@dataclass(frozen=True)
class RecyclingRules:
    default_lifecycle_stage: str = "lead"
    skip_contacts_with_open_deals: bool = True
    protect_customers: bool = True
    customer_lifecycle_stages: frozenset[str] = frozenset({"customer", "evangelist"})
    second_loss: SecondLossPolicy = SecondLossPolicy.KEEP


# HubSpot's standard stages from "sales works this person" on (see the hubspot facts); a
# portal's custom stages can be added in the YAML.
SALES_LIFECYCLE_STAGES = frozenset({"salesqualifiedlead", "opportunity", "customer", "evangelist"})
SALES_LEAD_STATUSES = frozenset({"IN_PROGRESS", "OPEN_DEAL", "CONNECTED"})


@dataclass(frozen=True)
class CameBackTriggers:
    """What tells that sales works a recycled contact again (`came_back:` in the YAML): the contact
    then leaves its nurture and its episode closes (see domain/reengagement.py)."""

    new_open_deal: bool = True  # a deal in an open stage the episode did not start from
    reopened_deal: bool = True  # a deal the contact was recycled from, in an open stage again
    lifecycle_stages: frozenset[str] = SALES_LIFECYCLE_STAGES  # moved by someone else to one of these
    lead_statuses: frozenset[str] = SALES_LEAD_STATUSES  # set by someone else to one of these


@dataclass(frozen=True)
class NurtureRules:
    reasons: tuple[ReasonRule, ...]
    deals: DealRules = DealRules()
    leads: LeadRules = LeadRules()
    markers: MarkerProperties = MarkerProperties()
    owner_tasks: OwnerTasks = OwnerTasks()
    recycling: RecyclingRules = RecyclingRules()
    came_back: CameBackTriggers = CameBackTriggers()
    marketing_notices: MarketingNotices = MarketingNotices()

    def reason_for(self, raw: str | None) -> ReasonRule | None:
        """The rule for a reason property's value: matched on the option value, then the label,
        ignoring case and surrounding space. None for a missing or unknown reason."""
        wanted = _fold(raw)
        if not wanted:
            return None
        for rule in self.reasons:
            if _fold(rule.value) == wanted:
                return rule
        for rule in self.reasons:
            if _fold(rule.label) == wanted:
                return rule
        return None


def _fold(text: str | None) -> str:
    return " ".join((text or "").split()).casefold()
