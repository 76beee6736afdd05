"""Has sales taken a recycled contact back? Decided from what HubSpot shows now. Pure.

A recycled contact comes back when sales works it again (`CameBackTriggers`, from the YAML's
`came_back:`): a deal in an open stage that the episode did not start from (a new deal, or one
newly associated), a deal it was recycled from open again, its lifecycle stage moved to a sales
stage, or its lead status set to one sales uses while working a lead.

Stage and status count only when someone other than this worker set them: the lifecycle stage the
handoff itself wrote is not a sign of sales, and neither is the lead status the contact already had
when it was recycled (a contact whose deal was lost often still shows OPEN_DEAL). So the lead
status is compared with the one seen at the start of the episode (`lead_status_at_start`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from handoff_worker.domain.journey import Journey, JourneyState, record_of
from handoff_worker.domain.nurture import CameBackTriggers


@dataclass(frozen=True)
class SalesSignals:
    """What HubSpot shows about one contact, as far as the triggers need it. None: not read."""

    lifecycle_stage: str | None = None
    lead_status: str | None = None
    open_deals: Sequence[str] = ()  # ids of the contact's deals that are in an open stage now


def came_back_how(
    journey: Journey,
    triggers: CameBackTriggers,
    signals: SalesSignals,
    *,
    stage_set_by_handoff: str | None,
    lead_status_at_start: str | None,
) -> str | None:
    """How the contact came back ("deal 2009 opened", ...), or None while marketing keeps it.

    `stage_set_by_handoff`: the lifecycle stage the recycling wrote (the reason's stage);
    `lead_status_at_start`: the lead status the contact had when the episode started (None when
    unknown: then the current status is taken as it, and only a later change counts)."""
    episode = journey.episode
    if episode.state is not JourneyState.RECYCLED:
        return None
    sources = {record_of(source.loss_id) for source in episode.sources}
    for deal_id in sorted(set(signals.open_deals), key=lambda d: (len(d), d)):
        if f"deal:{deal_id}" in sources:
            if triggers.reopened_deal:
                return f"deal {deal_id} reopened"
        elif triggers.new_open_deal:
            return f"deal {deal_id} opened"
    stage = (signals.lifecycle_stage or "").strip()
    if stage and stage != stage_set_by_handoff and stage in triggers.lifecycle_stages:
        return f"lifecycle stage set to {stage}"
    status = (signals.lead_status or "").strip()
    if (
        status
        and lead_status_at_start is not None
        and status != lead_status_at_start
        and status in triggers.lead_statuses
    ):
        return f"lead status set to {status}"
    return None
