"""The sweep's re-engagement step: recycled contacts that sales took back while no webhook told.

Judged by the state HubSpot shows now, not by what changed in the window: a contact still recycled
in its journey but with an open deal, a sales lifecycle stage or a sales lead status is sent on to
its contact task, which re-reads it and takes it out of its nurture. For every 100 recycled contacts
that costs one contact read, plus one association read per 1,000 and one deal read per 100 of
their deals; contacts that did not come back are not sent.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import redis

from handoff_worker.domain.journey import JourneyState
from handoff_worker.domain.models import ObjectType
from handoff_worker.domain.nurture import NurtureRules
from handoff_worker.domain.rules import LIFECYCLE_PROPERTY
from handoff_worker.handoff.journeys import journey_key
from handoff_worker.handoff.reengagement import Reengagement
from handoff_worker.handoff.resync.sweep import HandoffSink, ResyncSummary
from handoff_worker.hubspot.protocol import HubSpotGateway

log = logging.getLogger(__name__)

# Contacts judged together: one batch read of contacts, one of associations, one of deals.
CHUNK = 100


class CameBackRevisit:
    def __init__(
        self, client: redis.Redis, gateway: HubSpotGateway, rules: NurtureRules, reengagement: Reengagement
    ) -> None:
        self.client = client
        self.gateway = gateway
        self.rules = rules
        self.reengagement = reengagement

    def recycled_contacts(self) -> Iterator[list[str]]:
        """The contacts in a recycled episode, in chunks (a SCAN over the journeys: no index to
        keep in step with every journey write)."""
        prefix = journey_key("")
        chunk: list[str] = []
        for key in self.client.scan_iter(match=f"{prefix}*", count=1000):
            text = key.decode() if isinstance(key, bytes) else str(key)
            contact_id = text[len(prefix) :]
            if not contact_id.isdigit():  # a contact's history or lead status, not its journey
                continue
            chunk.append(contact_id)
            if len(chunk) >= CHUNK:
                yield from self._recycled_of(chunk)
                chunk = []
        if chunk:
            yield from self._recycled_of(chunk)

    def _recycled_of(self, contact_ids: list[str]) -> Iterator[list[str]]:
        ids = self.reengagement.recycled(contact_ids)
        if ids:
            yield sorted(ids, key=lambda c: (len(c), c))

    def revisit(self, summary: ResyncSummary, *, dry_run: bool, sink: HandoffSink) -> None:
        properties = (LIFECYCLE_PROPERTY, self.rules.leads.status_property)
        for contact_ids in self.recycled_contacts():
            summary.recycled_checked += len(contact_ids)
            contacts = self.gateway.batch_read(ObjectType.CONTACT, contact_ids, properties)
            signals = self.reengagement.signals_for(contacts, self.rules)
            journeys = {
                c: j
                for c, j in self.reengagement.journeys.load([c.id for c in contacts]).items()
                if j.episode.state is JourneyState.RECYCLED
            }
            for contact_id in sorted(self.reengagement.came_back_now(journeys, signals, self.rules)):
                summary.came_back += 1
                if dry_run:
                    continue
                try:
                    sink.contact(contact_id)
                except Exception as exc:
                    summary.failed += 1
                    summary.errors.append(f"contact {contact_id}: {exc}")
                    log.warning("resync could not send contact %s on: %s", contact_id, exc)
