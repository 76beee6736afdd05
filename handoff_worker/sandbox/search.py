"""CRM search as HubSpot answers it: filter groups, one sort, paging capped at 10,000 results."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from handoff_worker.sandbox.errors import validation_error
from handoff_worker.sandbox.portal import Portal
from handoff_worker.sandbox.records import StoredRecord, ms_from_value

MAX_GROUPS = 5
MAX_FILTERS_PER_GROUP = 6
MAX_PAGE = 200
MAX_RESULTS = 10_000
NUMERIC_TYPES = frozenset({"number", "datetime", "date"})


def search(portal: Portal, object_type: str, request: dict[str, Any]) -> dict[str, Any]:
    limit = int(request.get("limit", 10))
    after = int(request.get("after") or 0)
    groups = request.get("filterGroups", [])
    _check_limits(groups, limit, after, request.get("sorts", []))
    with portal.lock:
        resolved = portal.resolve_type(object_type)
        kinds = {name: p["type"] for name, p in portal.properties[resolved].items()}
        candidates = list(portal.objects[resolved].values())
        matching = [o for o in candidates if _matches_any(o, groups, kinds)]
        _sort(matching, request.get("sorts", []), kinds)
        page = matching[after : after + limit]
        names = request.get("properties") or None
        body: dict[str, Any] = {"total": len(matching), "results": [o.to_api(names) for o in page]}
    if after + limit < len(matching):
        body["paging"] = {"next": {"after": str(after + limit)}}
    return body


def _check_limits(groups: list[dict[str, Any]], limit: int, after: int, sorts: list[Any]) -> None:
    if len(groups) > MAX_GROUPS:
        raise validation_error(f"Too many filter groups ({len(groups)}); the maximum is {MAX_GROUPS}.")
    for group in groups:
        if len(group.get("filters", [])) > MAX_FILTERS_PER_GROUP:
            raise validation_error(
                f"Too many filters in a group ({len(group['filters'])}); "
                f"the maximum is {MAX_FILTERS_PER_GROUP}."
            )
    if not 0 < limit <= MAX_PAGE:
        raise validation_error(f"limit must be between 1 and {MAX_PAGE}, got {limit}.")
    if after >= MAX_RESULTS:
        raise validation_error(
            f"Paging past {MAX_RESULTS} results is not allowed (after={after}); narrow the filters."
        )
    if len(sorts) > 1:
        raise validation_error("Only one sort is supported.")


def _matches_any(obj: StoredRecord, groups: list[dict[str, Any]], kinds: dict[str, str]) -> bool:
    if not groups:
        return True
    return any(all(_matches(obj, f, kinds) for f in g.get("filters", [])) for g in groups)


def _matches(obj: StoredRecord, search_filter: dict[str, Any], kinds: dict[str, str]) -> bool:
    name = search_filter.get("propertyName", "")
    operator = search_filter.get("operator", "EQ")
    actual = obj.value(name)
    present = actual not in (None, "")
    if operator == "HAS_PROPERTY":
        return present
    if operator == "NOT_HAS_PROPERTY":
        return not present
    numeric = kinds.get(name) in NUMERIC_TYPES
    convert: Callable[[Any], Any] = _to_number if numeric else _to_text
    if operator in ("IN", "NOT_IN"):
        values = {convert(v) for v in search_filter.get("values", [])}
        inside = present and convert(actual) in values
        return inside if operator == "IN" else not inside
    if operator == "CONTAINS_TOKEN":
        return present and _contains_token(str(actual), str(search_filter.get("value", "")))
    if operator == "NEQ":
        return not present or convert(actual) != convert(search_filter.get("value"))
    if not present:
        return False
    left = convert(actual)
    if operator == "BETWEEN":
        low, high = convert(search_filter.get("value")), convert(search_filter.get("highValue"))
        return _safe(lambda: low <= left <= high)
    right = convert(search_filter.get("value"))
    comparisons: dict[str, Callable[[], bool]] = {
        "EQ": lambda: left == right,
        "LT": lambda: left < right,
        "LTE": lambda: left <= right,
        "GT": lambda: left > right,
        "GTE": lambda: left >= right,
    }
    if operator not in comparisons:
        raise validation_error(f"Unsupported filter operator {operator!r} on {name}.")
    return _safe(comparisons[operator])


def _safe(check: Callable[[], bool]) -> bool:
    try:
        return check()
    except TypeError:  # comparing a number with None: no match, as HubSpot skips unparsable values
        return False


def _to_number(value: Any) -> float | None:
    ms = ms_from_value(value)
    if ms is not None:
        return float(ms)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _to_text(value: Any) -> str:
    # HubSpot matches string values case-insensitively.
    return "" if value is None else str(value).lower()


def _contains_token(actual: str, token: str) -> bool:
    pattern = re.escape(token.lower()).replace(r"\*", ".*")
    return any(re.fullmatch(pattern, word) for word in re.split(r"[\s@.,;:_\-]+", actual.lower()))


def _sort(objects: list[StoredRecord], sorts: list[Any], kinds: dict[str, str]) -> None:
    if not sorts:
        objects.sort(key=lambda o: int(o.id) if o.id.isdigit() else 0)
        return
    spec = sorts[0]
    if isinstance(spec, str):
        name, descending = spec.lstrip("-"), spec.startswith("-")
    else:
        name, descending = spec.get("propertyName", "hs_object_id"), spec.get("direction") == "DESCENDING"
    numeric = kinds.get(name) in NUMERIC_TYPES

    def key(obj: StoredRecord) -> tuple[int, Any, int]:
        value = obj.value(name)
        converted = _to_number(value) if numeric else _to_text(value)
        tie_break = int(obj.id) if obj.id.isdigit() else 0
        return (converted is None, converted if converted is not None else 0, tie_break)

    objects.sort(key=key, reverse=descending)
