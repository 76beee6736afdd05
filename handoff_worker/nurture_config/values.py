"""Checks of single values. Each adds a problem that says what to write, and returns None, when
the value is wrong."""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterator, Sequence
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from handoff_worker.domain.rules import LIFECYCLE_ORDER
from handoff_worker.nurture_config.yaml_reader import Problems, Where, kind

# HubSpot's standard stages: the ordered ones, and "other", which stands outside the order.
STANDARD_LIFECYCLE_STAGES = (*LIFECYCLE_ORDER, "other")
# HubSpot internal property names: a letter, then letters, digits or underscores.
_PROPERTY_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
# HubSpot's ids are 64-bit numbers: at most 20 digits.
_DIGITS_RE = re.compile(r"^[0-9]{1,20}$")
_LARGEST_ID = 10**20 - 1

Fields = dict[str, tuple[Any, Where]]


def known_fields(mapping: CommentedMap, where: Where, allowed: Sequence[str], problems: Problems) -> Fields:
    """The known keys of a section with where each is; unknown keys become problems."""
    found: Fields = {}
    for key in mapping:
        line = key_line(mapping, key)
        name = str(key)
        if name in allowed:
            found[name] = (mapping[key], where.key(name, line))
            continue
        close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
        suggestion = f"did you mean '{close[0]}'? " if close else ""
        problems.add(
            where.key(name, line),
            f"unknown key '{name}'; {suggestion}Allowed here: {', '.join(allowed)}",
        )
    return found


def key_line(mapping: CommentedMap, key: object) -> int:
    try:
        return int(mapping.lc.key(key)[0]) + 1
    except (KeyError, TypeError, AttributeError):  # keys merged in with `<<:` carry no position
        return int(mapping.lc.line) + 1


def as_section(value: object, where: Where, problems: Problems, example: str) -> CommentedMap | None:
    if value is None:
        return CommentedMap()  # `deals:` with nothing under it means "all defaults"
    if isinstance(value, CommentedMap):
        return value
    problems.add(where, f"{kind(value)} is not a section; indent keys under it, e.g. {example}")
    return None


def text(value: object, where: Where, problems: Problems, example: str) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # numbers are fine as text: an option value like 2024
    if isinstance(value, float) and math.isfinite(value):
        return str(value)
    problems.add(where, f"{kind(value)} is not allowed; write some text, e.g. {example}")
    return None


def yes_no(value: object, where: Where, problems: Problems) -> bool | None:
    if isinstance(value, bool):
        return value
    # YAML 1.2 reads yes/no/on/off as text, which surprises people used to older YAML.
    hint = " (yes/no/on/off are read as text here)" if isinstance(value, str) else ""
    problems.add(where, f"{kind(value)} is not yes/no; write true or false{hint}")
    return None


def property_name(value: object, where: Where, problems: Problems, example: str) -> str | None:
    if isinstance(value, str) and _PROPERTY_NAME_RE.match(value.strip()):
        return value.strip()
    problems.add(
        where,
        f"{kind(value)} is not a HubSpot property's internal name; write the internal name "
        f"(letters, digits and underscores, shown in HubSpot's property settings), e.g. {example}",
    )
    return None


def numeric_id(value: object, where: Where, problems: Problems, what: str, example: str) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= _LARGEST_ID:
        return str(value)
    if isinstance(value, str) and _DIGITS_RE.match(value.strip()):
        return value.strip()
    problems.add(where, f"{kind(value)} is not a {what} id; {example}")
    return None


def items(value: object, where: Where, problems: Problems, example: str) -> Iterator[tuple[Any, Where]]:
    if value is None:
        return
    if not isinstance(value, CommentedSeq):
        problems.add(
            where, f"{kind(value)} is not a list; write one item per line after '- ', e.g. {example}"
        )
        return
    for index, item in enumerate(value):
        yield item, where.item(index, int(value.lc.item(index)[0]) + 1)


def lifecycle_stage(value: object, where: Where, allowed: frozenset[str], problems: Problems) -> str | None:
    stage = text(value, where, problems, "lead")
    if stage is None:
        return None
    if stage not in allowed:
        standard = ", ".join(STANDARD_LIFECYCLE_STAGES)
        problems.add(
            where,
            f"'{stage}' is not a lifecycle stage; use one of HubSpot's internal values ({standard}) "
            "or add a custom stage's internal value to `custom_lifecycle_stages:`",
        )
        return None
    return stage
