"""The search walk: every deal or contact matching some filters, modified in a window, each once.

The walk sorts ascending by the modified-date property and starts every page as a new query from
the last timestamp seen (keyset pagination), skipping ids it already yielded. HubSpot's `after` is
an offset: records modified during the walk (the sweep's own handoffs modify them) would shift the
offsets and make it step over records. A fresh query also never meets the 10,000-results-per-query
cap, except inside one run of records sharing a timestamp, the only place `after` is used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import datetime

from handoff_worker.domain.models import CrmObject, ObjectType, Pipeline, SearchFilter
from handoff_worker.domain.nurture import DealRules
from handoff_worker.domain.rules import lost_stage_ids
from handoff_worker.handoff.resync.errors import ResyncError
from handoff_worker.hubspot.protocol import HubSpotGateway

# HubSpot's search limits: 200 results a page, 10,000 results per query, at most 5 filter groups
# of at most 6 filters. IN lists are kept to 100 values each, HubSpot's documented maximum.
SEARCH_PAGE_SIZE = 200
SEARCH_RESULT_CAP = 10_000
MAX_FILTER_GROUPS = 5
MAX_IN_VALUES = 100

# Deals and contacts name their last-modified property differently.
MODIFIED_PROPERTY: dict[ObjectType, str] = {
    ObjectType.DEAL: "hs_lastmodifieddate",
    ObjectType.CONTACT: "lastmodifieddate",
}


def to_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def modified_ms(record: CrmObject, property_name: str) -> int:
    """The record's last-modified time in ms. HubSpot returns ISO text; ms digits are accepted too."""
    raw = record.get(property_name)
    if raw:
        if raw.isdigit():
            return int(raw)
        return to_ms(datetime.fromisoformat(raw.replace("Z", "+00:00")))
    if record.updated_at is not None:
        return to_ms(record.updated_at)
    raise ResyncError(
        f"{record.id} came back from search without {property_name}: cannot order the walk by it"
    )


def chunk_in_filter(property_name: str, values: Sequence[str]) -> list[list[SearchFilter]]:
    """One filter group per chunk of values (OR of groups), each an IN of at most 100 values."""
    ordered = sorted(set(values))
    return [
        [SearchFilter(property_name, "IN", values=tuple(ordered[i : i + MAX_IN_VALUES]))]
        for i in range(0, len(ordered), MAX_IN_VALUES)
    ]


def walk_modified(
    gateway: HubSpotGateway,
    object_type: ObjectType,
    filter_groups: Sequence[Sequence[SearchFilter]],
    *,
    since: datetime,
    until: datetime,
    properties: Sequence[str] = (),
    page_size: int = SEARCH_PAGE_SIZE,
    result_cap: int = SEARCH_RESULT_CAP,
    on_page: Callable[[], None] | None = None,
) -> Iterator[CrmObject]:
    """Every record matching any of `filter_groups` modified in [since, until], each once.

    More than 5 groups are split into several walks (HubSpot's limit per query). `on_page` is
    called after each page, e.g. to renew a lock or stop a sweep that lost it.
    """
    if not filter_groups:
        return
    # Ids already yielded, across every query of the walk: ids only, a few MB for 100,000 records.
    seen: set[str] = set()
    for start in range(0, len(filter_groups), MAX_FILTER_GROUPS):
        yield from _walk_one_query_set(
            gateway,
            object_type,
            filter_groups[start : start + MAX_FILTER_GROUPS],
            since_ms=to_ms(since),
            until_ms=to_ms(until),
            properties=properties,
            page_size=page_size,
            result_cap=result_cap,
            on_page=on_page,
            seen=seen,
        )


def _walk_one_query_set(
    gateway: HubSpotGateway,
    object_type: ObjectType,
    filter_groups: Sequence[Sequence[SearchFilter]],
    *,
    since_ms: int,
    until_ms: int,
    properties: Sequence[str],
    page_size: int,
    result_cap: int,
    on_page: Callable[[], None] | None,
    seen: set[str],
) -> Iterator[CrmObject]:
    """Keyset pagination: every page is a fresh query from the newest timestamp seen.

    HubSpot's `after` is an offset. A record modified while the walk runs (the sweep's own
    handoffs do that) moves past the sort position, everything behind it shifts back one place,
    and an offset would step over a record. A fresh query from the last timestamp cannot, so
    `after` is only used inside a run of records that all share the query's start timestamp, the
    one place a fresh query would make no progress.
    """
    modified = MODIFIED_PROPERTY[object_type]
    wanted = list(dict.fromkeys([*properties, modified]))
    last_stamp = since_ms
    while True:
        cursor = last_stamp
        groups = [
            [*group, SearchFilter(modified, "GTE", str(cursor)), SearchFilter(modified, "LTE", str(until_ms))]
            for group in filter_groups
        ]
        fetched = 0
        after: str | None = None
        while True:
            page = gateway.search(
                object_type,
                groups,
                properties=wanted,
                sort_property=modified,
                ascending=True,
                limit=page_size,
                after=after,
            )
            fetched += len(page.results)
            for record in page.results:
                # Results come sorted, so the last one's timestamp is where the next query starts.
                last_stamp = max(last_stamp, modified_ms(record, modified))
                if record.id in seen:
                    continue  # returned again at the seam, or modified after it was yielded
                seen.add(record.id)
                yield record
            if on_page is not None:
                on_page()
            if page.next_after is None or not page.results:
                return
            if last_stamp > cursor:
                break  # progress: the next page is a fresh query from the newest timestamp
            if fetched + page_size > result_cap:
                raise ResyncError(
                    f"more than {result_cap:,} {object_type.value} share {modified} = {cursor} ms: "
                    "search cannot page past them. Hand them off by id (resync --deal ID) or ask "
                    "HubSpot support; the sweep stopped here so the watermark does not move past them."
                )
            after = page.next_after  # a run at one timestamp longer than a page: page within it


def all_lost_stage_ids(pipelines: Sequence[Pipeline], deal_rules: DealRules) -> set[str]:
    """Every pipeline's lost stage ids in one set: stage ids are unique across an account's deal
    pipelines, so one `dealstage IN (...)` filter covers them all."""
    return {stage for stages in lost_stage_ids(pipelines, deal_rules).values() for stage in stages}
