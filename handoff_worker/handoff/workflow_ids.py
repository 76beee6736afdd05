"""Workflow ids as marketers see them, turned into the ids HubSpot's enrollment API wants.

The number in a workflow's URL is its v4 flow id; the only enrollment API (legacy v2) wants the
legacy workflow id. The nurture YAML may hold either. At use time (the YAML loader never calls
HubSpot), an id is looked up once with HubSpot's flow-id mapping and the answer is kept in Redis
for every process: an id HubSpot maps as a flow id becomes its legacy id; an id it does not know as
a flow id is taken to be a legacy id already.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import redis

from handoff_worker.domain.nurture import NurtureMethod, NurtureRules
from handoff_worker.domain.rules import HandoffPlan
from handoff_worker.errors import PermanentHubSpotError
from handoff_worker.hubspot.protocol import HubSpotGateway
from handoff_worker.state import KEY_PREFIX

log = logging.getLogger(__name__)

# A mapping never changes for a workflow; a day bounds how long a deleted-and-reused id could linger.
MAPPING_TTL_SECONDS = 24 * 3600
# When HubSpot refuses the mapping itself (e.g. the app lacks the automation scope), the ids are
# used as written, and the mapping is asked again after this long rather than on every enrollment.
REFUSED_TTL_SECONDS = 3600


def workflow_id_key(configured_id: str) -> str:
    return f"{KEY_PREFIX}workflow-id:{configured_id}"


class WorkflowIds:
    def __init__(self, client: redis.Redis, gateway: HubSpotGateway) -> None:
        self.client = client
        self.gateway = gateway

    def legacy_ids(self, configured_ids: Sequence[str]) -> dict[str, str]:
        """configured id -> legacy workflow id, for every id given (one mapping call at most)."""
        wanted = list(dict.fromkeys(configured_ids))
        if not wanted:
            return {}
        cached = self.client.mget([workflow_id_key(i) for i in wanted])
        found = {i: str(v) for i, v in zip(wanted, cached, strict=True) if v}
        missing = [i for i in wanted if i not in found]
        if not missing:
            return found
        ttl = MAPPING_TTL_SECONDS
        try:
            mapped = self.gateway.flow_to_workflow_ids(missing)
        except PermanentHubSpotError as exc:
            log.warning("workflow ids used as written: HubSpot refused the flow-id mapping (%s)", exc)
            mapped, ttl = {}, REFUSED_TTL_SECONDS
        pipe = self.client.pipeline()
        for configured in missing:
            found[configured] = mapped.get(configured, configured)
            pipe.set(workflow_id_key(configured), found[configured], ex=ttl)
        pipe.execute()
        return found

    def legacy_id(self, configured_id: str) -> str:
        return self.legacy_ids([configured_id])[configured_id]

    def prepare(self, rules: NurtureRules, plan: HandoffPlan) -> None:
        """Before a run enrolls or unenrolls anyone: every workflow id of the rules mapped at once,
        so a cold cache costs one mapping call for the whole file rather than one per workflow."""
        if any(n.method is NurtureMethod.WORKFLOW for a in plan.actions for n in (*a.nurtures, *a.leave)):
            self.legacy_ids(
                [n.workflow_id for r in rules.reasons for n in r.nurtures if n.workflow_id is not None]
            )
