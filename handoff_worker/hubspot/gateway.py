"""`SdkGateway`: the HubSpotGateway protocol over hubspot-api-client and one requests Session.

Every call here goes through `_send`: take a slot from the shared rate limiter, send one HTTP
request with a timeout, feed the rate-limit headers back to the limiter, translate any failure
into our errors, and let the one retry policy decide about another attempt (which takes a slot
of its own). The SDK's generated APIs carry the CRM calls; the Session carries what the SDK lacks
(legacy workflow enrollment, v4 flows and their id mappings).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote

import redis
import requests
from hubspot import HubSpot
from hubspot.crm.associations.v4 import (
    BatchInputPublicFetchAssociationsBatchRequest,
    PublicFetchAssociationsBatchRequest,
)
from hubspot.crm.objects import (
    AssociationSpec,
    BatchInputSimplePublicObjectBatchInput,
    BatchReadInputSimplePublicObjectId,
    Filter,
    FilterGroup,
    PublicAssociationsForObject,
    PublicObjectId,
    PublicObjectSearchRequest,
    SimplePublicObjectBatchInput,
    SimplePublicObjectId,
    SimplePublicObjectInputForCreate,
)
from hubspot.crm.properties import OptionInput, PropertyCreate

from handoff_worker import metrics
from handoff_worker.domain.models import (
    BatchUpdateResult,
    CrmObject,
    Flow,
    ListInfo,
    ListMembershipResult,
    NewTask,
    ObjectType,
    Pipeline,
    PropertyDefinition,
    PropertyOption,
    RecordError,
    SearchFilter,
    SearchPage,
    Stage,
)
from handoff_worker.errors import DailyLimitError, HubSpotError, RateLimitedError, SettingsError
from handoff_worker.hubspot.ratelimit import RedisRateLimiter
from handoff_worker.hubspot.retry import DEFAULT_POLICY, RetryPolicy, call_with_retry
from handoff_worker.hubspot.translate import RequestNotSentError, error_from_response, translate
from handoff_worker.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")
Headers = Mapping[str, str]

BATCH_SIZE = 100  # HubSpot's cap for CRM batch read/update and list membership changes
ASSOCIATION_BATCH_SIZE = 1000  # associations v4 batch read accepts up to 1,000 inputs
ASSOCIATION_PAGE_SIZE = 500
SEARCH_PAGE_MAX = 200
FLOW_PAGE_SIZE = 100
LIST_MEMBERS_PAGE_SIZE = 250  # the list memberships read's page cap
# HubSpot-defined association type ids for a task's links.
TASK_TO_DEAL = 216
TASK_TO_CONTACT = 204


def _count_request(endpoint: str, sent_at: float, status: str) -> None:
    """One request that reached HubSpot (or timed out on the way): `status` is `2xx` for an
    answer the SDK accepted, the HTTP status of an error, or `error` when none came back."""
    metrics.HUBSPOT_REQUEST_SECONDS.labels(endpoint=endpoint).observe(time.monotonic() - sent_at)
    metrics.HUBSPOT_REQUESTS.labels(endpoint=endpoint, status=status).inc()
    if status == "429":
        metrics.HUBSPOT_RATE_LIMITED.labels(endpoint=endpoint).inc()


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


def _crm_object(model: Any, properties: Sequence[str]) -> CrmObject:
    """A CrmObject holding exactly the asked-for properties (missing ones as None)."""
    raw: dict[str, Any] = dict(model.properties or {})
    updated_at = _parse_time(raw.get("hs_lastmodifieddate")) or _parse_time(model.updated_at)
    return CrmObject(
        id=str(model.id),
        properties={name: raw.get(name) for name in properties},
        updated_at=updated_at,
        archived=bool(model.archived),
    )


def _stage(model: Any) -> Stage:
    metadata: dict[str, str] = dict(model.metadata or {})
    probability_text = metadata.get("probability")
    try:
        probability = float(probability_text) if probability_text not in (None, "") else None
    except ValueError:
        probability = None
    return Stage(
        id=str(model.id),
        label=str(model.label or ""),
        is_closed=str(metadata.get("isClosed", "false")).lower() == "true",
        probability=probability,
        display_order=int(model.display_order or 0),
    )


def _record_error(model: Any) -> RecordError:
    context: dict[str, list[str]] = dict(model.context or {})
    return RecordError(
        ids=tuple(str(i) for i in context.get("ids", ())),
        status=str(model.status or ""),
        category=str(model.category or ""),
        message=str(model.message or ""),
    )


def _sdk_filter(f: SearchFilter) -> Filter:
    return Filter(
        property_name=f.property_name,
        operator=f.operator,
        value=f.value,
        high_value=f.high_value,
        values=list(f.values) if f.values is not None else None,
    )


def _ms(moment: datetime) -> str:
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return str(int(aware.timestamp() * 1000))


class SdkGateway:
    """The HubSpot gateway of the running worker. Build it with `build_gateway`."""

    def __init__(
        self,
        client: HubSpot,
        session: requests.Session,
        *,
        base_url: str,
        timeout_seconds: float,
        limiter: RedisRateLimiter | None = None,
        retry_policy: RetryPolicy = DEFAULT_POLICY,
    ) -> None:
        self._session = session
        self._base_url = base_url.rstrip("/")
        self._timeout = timeout_seconds
        self._limiter = limiter
        self._policy = retry_policy
        self._calls = 0
        # The SDK builds a new API client on every attribute access: take each one once.
        self._objects = client.crm.objects.basic_api
        self._objects_batch = client.crm.objects.batch_api
        self._objects_search = client.crm.objects.search_api
        self._tasks = client.crm.objects.tasks.basic_api
        self._associations = client.crm.associations.v4.basic_api
        self._associations_batch = client.crm.associations.v4.batch_api
        self._pipelines = client.crm.pipelines.pipelines_api
        self._properties = client.crm.properties.core_api
        self._lists = client.crm.lists.lists_api
        self._memberships = client.crm.lists.memberships_api

    @property
    def calls_made(self) -> int:
        return self._calls

    # -- the one path every request takes -------------------------------------------------------

    def _send(
        self,
        operation: str,
        request: Callable[[], tuple[T, Headers | None]],
        *,
        search: bool = False,
        idempotent: bool = True,
    ) -> T:
        endpoint = metrics.endpoint_label(operation)

        def attempt() -> T:
            if self._limiter is not None:
                waiting_since = time.monotonic()
                self._limiter.acquire(search=search, operation=operation)
                metrics.HUBSPOT_BUDGET_WAIT_SECONDS.inc(time.monotonic() - waiting_since)
            self._calls += 1
            sent_at = time.monotonic()
            try:
                result, headers = request()
            except Exception as exc:
                self._observe(getattr(exc, "headers", None))
                error = translate(exc, operation)
                if isinstance(error, RequestNotSentError):
                    self._calls -= 1  # nothing reached HubSpot
                else:
                    _count_request(endpoint, sent_at, str(error.status) if error.status else "error")
                self._share_rate_limit(error)
                # Not chained: a logged traceback would print the wire error's text, whose URL
                # can hold an email. The translation names the wire error's types instead.
                raise error from None
            _count_request(endpoint, sent_at, "2xx")
            self._observe(headers)
            return result

        return call_with_retry(attempt, operation=operation, idempotent=idempotent, policy=self._policy)

    def _share_rate_limit(self, error: HubSpotError) -> None:
        # A rolling-window 429 means the account (maybe through another integration) is over its
        # budget: every process holds off, not only the one that was told.
        rolling = isinstance(error, RateLimitedError) and not isinstance(error, DailyLimitError)
        if self._limiter is not None and rolling and error.retry_after:
            self._limiter.pause(error.retry_after)
        if self._limiter is not None and isinstance(error, DailyLimitError) and error.status == 429:
            # Spent for the day: bulk work stops at once, whatever the headers said before.
            daily = self._limiter.daily_budget()
            if daily is not None:
                self._limiter.record_daily(daily.maximum, 0)

    def _observe(self, headers: Any) -> None:
        if self._limiter is not None and headers:
            self._limiter.observe(dict(headers))

    def _sdk(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, Headers]:
        """Call a generated API's `*_with_http_info` method with our timeout."""
        data, _status, headers = method(*args, _request_timeout=self._timeout, **kwargs)
        return data, headers

    def _sdk_json(self, method: Callable[..., Any], *args: Any) -> tuple[Any, Headers]:
        """Like `_sdk`, but the answer's JSON as sent, for models whose field names drift from
        HubSpot's (the lists SDK expects `recordsIdsAdded`, HubSpot's schema says `recordIdsAdded`)."""
        raw = method(*args, _request_timeout=self._timeout, _preload_content=False)
        return (json.loads(raw.data) if raw.data else {}), raw.headers

    def _http(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        operation: str | None = None,
    ) -> Callable[[], tuple[Any, Headers]]:
        """A request over our Session (for endpoints the SDK lacks), raising our errors.

        `operation` names the request in errors; pass one whenever the path holds personal data
        (an email), since error text reaches the audit, the dead letter and the logs."""
        operation_url = f"{self._base_url}{path}"
        named = operation or f"{method} {path}"

        def request() -> tuple[Any, Headers]:
            response = self._session.request(
                method, operation_url, json=json, params=params, timeout=self._timeout
            )
            if not 200 <= response.status_code <= 299:
                raise error_from_response(
                    response.status_code, dict(response.headers), response.content, named
                )
            body = response.json() if response.content else None
            return body, response.headers

        return request

    # -- objects --------------------------------------------------------------------------------

    def _get_object(self, object_type: ObjectType, object_id: str, properties: Sequence[str]) -> CrmObject:
        model = self._send(
            f"get {object_type.value[:-1]}",
            lambda: self._sdk(
                self._objects.get_by_id_with_http_info,
                object_type.value,
                object_id,
                properties=list(properties),
            ),
        )
        return _crm_object(model, properties)

    def get_deal(self, deal_id: str, properties: Sequence[str]) -> CrmObject:
        return self._get_object(ObjectType.DEAL, deal_id, properties)

    def get_contact(self, contact_id: str, properties: Sequence[str]) -> CrmObject:
        return self._get_object(ObjectType.CONTACT, contact_id, properties)

    def batch_read(
        self, object_type: ObjectType, ids: Sequence[str], properties: Sequence[str]
    ) -> list[CrmObject]:
        found: list[CrmObject] = []
        for chunk in _chunks(list(dict.fromkeys(ids)), BATCH_SIZE):
            body = BatchReadInputSimplePublicObjectId(
                properties=list(properties),
                properties_with_history=[],
                inputs=[SimplePublicObjectId(id=i) for i in chunk],
            )
            response = self._send(
                f"batch read {object_type.value}",
                lambda body=body: self._sdk(  # type: ignore[misc]  # bind this chunk's body
                    self._objects_batch.read_with_http_info, object_type.value, body
                ),
            )
            found.extend(_crm_object(model, properties) for model in response.results or ())
        return found

    def batch_update_contacts(self, updates: Mapping[str, Mapping[str, str]]) -> BatchUpdateResult:
        updated: list[CrmObject] = []
        errors: list[RecordError] = []
        for chunk in _chunks(list(updates), BATCH_SIZE):
            body = BatchInputSimplePublicObjectBatchInput(
                inputs=[SimplePublicObjectBatchInput(id=i, properties=dict(updates[i])) for i in chunk]
            )
            # A batch update sets absolute values, so sending it twice is harmless: retried freely.
            response = self._send(
                "batch update contacts",
                lambda body=body: self._sdk(  # type: ignore[misc]  # bind this chunk's body
                    self._objects_batch.update_with_http_info, ObjectType.CONTACT.value, body
                ),
            )
            written = sorted({name for i in chunk for name in updates[i]})
            updated.extend(_crm_object(model, written) for model in response.results or ())
            # 207 Multi-Status arrives as a model with `errors`, not as an exception.
            errors.extend(_record_error(e) for e in getattr(response, "errors", None) or ())
        return BatchUpdateResult(updated=tuple(updated), errors=tuple(errors))

    # -- associations ---------------------------------------------------------------------------

    def associated_ids(self, from_type: ObjectType, object_id: str, to_type: ObjectType) -> list[str]:
        ids: list[str] = []
        after: str | None = None
        while True:
            page_args: dict[str, Any] = {"limit": ASSOCIATION_PAGE_SIZE}
            if after:
                page_args["after"] = after
            page = self._send(
                f"list {from_type.value[:-1]} {to_type.value} associations",
                lambda page_args=page_args: self._sdk(  # type: ignore[misc]  # bind this page's args
                    self._associations.get_page_with_http_info,
                    from_type.value,
                    object_id,
                    to_type.value,
                    **page_args,
                ),
            )
            ids.extend(str(r.to_object_id) for r in page.results or ())
            after = page.paging.next.after if page.paging and page.paging.next else None
            if not after:
                return ids

    def batch_associated_ids(
        self, from_type: ObjectType, ids: Sequence[str], to_type: ObjectType
    ) -> dict[str, list[str]]:
        unique = list(dict.fromkeys(ids))
        found: dict[str, list[str]] = {i: [] for i in unique}
        for chunk in _chunks(unique, ASSOCIATION_BATCH_SIZE):
            body = BatchInputPublicFetchAssociationsBatchRequest(
                inputs=[PublicFetchAssociationsBatchRequest(id=i) for i in chunk]
            )
            # Inputs without associations come back in `errors` (207); they keep their empty list.
            response = self._send(
                f"batch read {from_type.value[:-1]} {to_type.value} associations",
                lambda body=body: self._sdk(  # type: ignore[misc]  # bind this chunk's body
                    self._associations_batch.get_page_with_http_info, from_type.value, to_type.value, body
                ),
            )
            for result in response.results or ():
                source = str(result._from.id)
                found.setdefault(source, []).extend(str(t.to_object_id) for t in result.to or ())
        return found

    # -- pipelines and search -------------------------------------------------------------------

    def deal_pipelines(self) -> list[Pipeline]:
        response = self._send(
            "list deal pipelines",
            lambda: self._sdk(self._pipelines.get_all_with_http_info, ObjectType.DEAL.value),
        )
        return [
            Pipeline(
                id=str(p.id),
                label=str(p.label or ""),
                stages=tuple(_stage(s) for s in sorted(p.stages or (), key=lambda s: s.display_order or 0)),
            )
            for p in response.results or ()
        ]

    def search(
        self,
        object_type: ObjectType,
        filter_groups: Sequence[Sequence[SearchFilter]],
        *,
        properties: Sequence[str],
        sort_property: str | None = None,
        ascending: bool = True,
        limit: int = 200,
        after: str | None = None,
    ) -> SearchPage:
        if not 1 <= limit <= SEARCH_PAGE_MAX:
            raise ValueError(f"search limit={limit}: HubSpot returns 1 to {SEARCH_PAGE_MAX} results a page")
        sorts = (
            [{"propertyName": sort_property, "direction": "ASCENDING" if ascending else "DESCENDING"}]
            if sort_property
            else []
        )
        body = PublicObjectSearchRequest(
            filter_groups=[FilterGroup(filters=[_sdk_filter(f) for f in group]) for group in filter_groups],
            sorts=sorts,
            properties=list(properties),
            limit=limit,
            after=after,
        )
        response = self._send(
            f"search {object_type.value}",
            lambda: self._sdk(self._objects_search.do_search_with_http_info, object_type.value, body),
            search=True,
        )
        next_page = response.paging.next if response.paging else None
        return SearchPage(
            results=tuple(_crm_object(m, properties) for m in response.results or ()),
            total=int(response.total or 0),
            next_after=str(next_page.after) if next_page and next_page.after else None,
        )

    # -- writes that start nurture ---------------------------------------------------------------

    def create_task(self, task: NewTask) -> str:
        properties = {
            "hs_task_subject": task.subject,
            "hs_task_body": task.body,
            "hs_timestamp": _ms(task.due_at),
            "hs_task_priority": task.priority,
            "hs_task_status": "NOT_STARTED",
        }
        if task.owner_id:
            properties["hubspot_owner_id"] = task.owner_id
        links = [(task.deal_id, TASK_TO_DEAL), (task.contact_id, TASK_TO_CONTACT)]
        associations = [
            PublicAssociationsForObject(
                to=PublicObjectId(id=target),
                types=[AssociationSpec(association_category="HUBSPOT_DEFINED", association_type_id=type_id)],
            )
            for target, type_id in links
            if target
        ]
        body = SimplePublicObjectInputForCreate(properties=properties, associations=associations)
        # Not idempotent: a second POST creates a second task (see retry.is_retryable).
        created = self._send(
            "create task",
            lambda: self._sdk(self._tasks.create_with_http_info, body),
            idempotent=False,
        )
        return str(created.id)

    def enroll_in_workflow(self, workflow_id: str, email: str) -> None:
        # Enrolling an enrolled contact changes nothing, so a retry is safe.
        workflow, contact = quote(workflow_id, safe=""), quote(email, safe="")
        path = f"/automation/v2/workflows/{workflow}/enrollments/contacts/{contact}"
        # Named without the email: error text is kept in the audit, the dead letter and logs.
        operation = f"enroll contact in workflow {workflow_id}"
        self._send(operation, self._http("POST", path, operation=operation))

    def unenroll_from_workflow(self, workflow_id: str, email: str) -> None:
        # Unenrolling a contact that is not enrolled changes nothing, so a retry is safe.
        workflow, contact = quote(workflow_id, safe=""), quote(email, safe="")
        path = f"/automation/v2/workflows/{workflow}/enrollments/contacts/{contact}"
        operation = f"unenroll contact from workflow {workflow_id}"
        self._send(operation, self._http("DELETE", path, operation=operation))

    def current_enrollments(self, contact_id: str) -> list[str]:
        path = f"/automation/v2/workflows/enrollments/contacts/{quote(contact_id, safe='')}"
        answer = self._send("read the contact's workflow enrollments", self._http("GET", path)) or []
        return [str(w["id"]) for w in answer if isinstance(w, dict) and w.get("id") is not None]

    def remove_from_list(self, list_id: str, contact_ids: Iterable[str]) -> None:
        for chunk in _chunks(list(dict.fromkeys(contact_ids)), BATCH_SIZE):
            self._send(
                "remove contacts from list",
                lambda chunk=chunk: self._sdk_json(  # type: ignore[misc]  # bind this chunk
                    self._memberships.remove_with_http_info, list_id, list(chunk)
                ),
            )

    def list_members(self, list_id: str) -> list[str]:
        members: list[str] = []
        after: str | None = None
        path = f"/crm/v3/lists/{quote(list_id, safe='')}/memberships"
        while True:
            params: dict[str, Any] = {"limit": LIST_MEMBERS_PAGE_SIZE}
            if after:
                params["after"] = after
            page = self._send("read list memberships", self._http("GET", path, params=params)) or {}
            members.extend(str(row["recordId"]) for row in page.get("results", ()) if "recordId" in row)
            after = ((page.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                return members

    def add_to_list(self, list_id: str, contact_ids: Iterable[str]) -> ListMembershipResult:
        added: list[str] = []
        missing: list[str] = []
        already: list[str] = []
        for chunk in _chunks(list(dict.fromkeys(contact_ids)), BATCH_SIZE):
            answer = self._send(
                "add contacts to list",
                lambda chunk=chunk: self._sdk_json(  # type: ignore[misc]  # bind this chunk
                    self._memberships.add_with_http_info, list_id, list(chunk)
                ),
            )
            chunk_added = [
                str(i) for i in answer.get("recordIdsAdded") or answer.get("recordsIdsAdded") or ()
            ]
            chunk_missing = [str(i) for i in answer.get("recordIdsMissing") or ()]
            added.extend(chunk_added)
            missing.extend(chunk_missing)
            # HubSpot reports only what changed; ids neither added nor missing were members already.
            already.extend(i for i in chunk if i not in set(chunk_added) | set(chunk_missing))
        return ListMembershipResult(
            added=tuple(added), missing=tuple(missing), already_members=tuple(already)
        )

    def get_list(self, list_id: str) -> ListInfo:
        response = self._send("get list", lambda: self._sdk(self._lists.get_by_id_with_http_info, list_id))
        found = response.list
        return ListInfo(
            id=str(found.list_id),
            name=str(found.name or ""),
            processing_type=str(found.processing_type or ""),
            object_type_id=str(found.object_type_id or ""),
        )

    # -- properties and flows -------------------------------------------------------------------

    def get_property(self, object_type: ObjectType, name: str) -> PropertyDefinition:
        model = self._send(
            "get property",
            lambda: self._sdk(self._properties.get_by_name_with_http_info, object_type.value, name),
        )
        return PropertyDefinition(
            object_type=object_type.value,
            name=str(model.name),
            label=str(model.label or ""),
            type=str(model.type or ""),
            field_type=str(model.field_type or ""),
            options=tuple(
                PropertyOption(label=str(o.label), value=str(o.value), hidden=bool(o.hidden))
                for o in model.options or ()
            ),
            group_name=str(model.group_name or ""),
        )

    def create_property(self, object_type: ObjectType, definition: PropertyDefinition) -> None:
        group = definition.group_name or (
            "dealinformation" if object_type is ObjectType.DEAL else "contactinformation"
        )
        body = PropertyCreate(
            name=definition.name,
            label=definition.label,
            type=definition.type,
            field_type=definition.field_type,
            group_name=group,
            options=[
                OptionInput(label=o.label, value=o.value, hidden=o.hidden, display_order=n)
                for n, o in enumerate(definition.options)
            ],
        )
        # A repeat after a lost answer fails with 409 (already exists), never duplicates.
        self._send(
            "create property",
            lambda: self._sdk(self._properties.create_with_http_info, object_type.value, body),
        )

    def list_flows(self) -> list[Flow]:
        flows: list[Flow] = []
        after: str | None = None
        while True:
            params: dict[str, Any] = {"limit": FLOW_PAGE_SIZE}
            if after:
                params["after"] = after
            page = self._send("list flows", self._http("GET", "/automation/v4/flows", params=params)) or {}
            flows.extend(
                Flow(
                    id=str(f["id"]),
                    name=str(f.get("name") or ""),
                    is_enabled=bool(f.get("isEnabled")),
                    object_type_id=str(f.get("objectTypeId") or ""),
                    revision_id=str(f["revisionId"]) if f.get("revisionId") is not None else None,
                    re_enrollment=bool((f.get("enrollmentCriteria") or {}).get("shouldReEnroll")),
                )
                for f in page.get("results", ())
            )
            after = ((page.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                return flows

    def flow_to_workflow_ids(self, flow_ids: Sequence[str]) -> dict[str, str]:
        mapping: dict[str, str] = {}
        for chunk in _chunks(list(dict.fromkeys(flow_ids)), BATCH_SIZE):
            body = {"inputs": [{"type": "FLOW_ID", "flowId": i} for i in chunk]}
            answer = self._send(
                "map flow ids to workflow ids",
                self._http("POST", "/automation/v4/workflow-id-mappings/batch/read", json=body),
            )
            for row in (answer or {}).get("results", ()):
                if row.get("flowId") is not None and row.get("workflowId") is not None:
                    mapping[str(row["flowId"])] = str(row["workflowId"])
        return mapping


def build_gateway(settings: Settings, redis: redis.Redis | None = None) -> SdkGateway:
    """The gateway for `settings`. With `redis`, calls share the account's rate budget with every
    process using that Redis; without it, this process does not pace itself (tests, one-offs)."""
    if not settings.hubspot_access_token:
        raise SettingsError(
            "HUBSPOT_ACCESS_TOKEN is not set: the gateway needs the private app's token; "
            "add it to the environment or .env"
        )
    client = HubSpot(
        access_token=settings.hubspot_access_token,
        host=settings.hubspot_base_url,
        # Retries belong to retry.py alone; urllib3 would otherwise retry connection errors itself.
        retry=False,
        # HubSpot adds fields and enum values over time; a strict model must not fail a good answer.
        client_side_validation=False,
    )
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {settings.hubspot_access_token}"
    session.headers["Accept"] = "application/json"
    limiter = (
        RedisRateLimiter(
            redis,
            settings.rate_limit,
            settings.search_rate_limit,
            bulk_share=settings.bulk_share,
            daily_reserve=settings.daily_reserve,
        )
        if redis is not None
        else None
    )
    return SdkGateway(
        client,
        session,
        base_url=settings.hubspot_base_url,
        timeout_seconds=settings.hubspot_timeout_seconds,
        limiter=limiter,
    )
