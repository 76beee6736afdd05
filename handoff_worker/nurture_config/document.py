"""The whole document: the version, custom stages, the settings sections and the reasons."""

from __future__ import annotations

from dataclasses import replace

from ruamel.yaml.comments import CommentedMap

from handoff_worker.domain.nurture import NurtureRules, ReasonRule
from handoff_worker.nurture_config.sections import REASON, SETTINGS_SECTIONS
from handoff_worker.nurture_config.table import Context, read_section
from handoff_worker.nurture_config.values import (
    STANDARD_LIFECYCLE_STAGES,
    Fields,
    as_section,
    items,
    key_line,
    known_fields,
    text,
)
from handoff_worker.nurture_config.yaml_reader import Problems, Where, kind

SUPPORTED_VERSION = 1
TOP_KEYS = (
    "version",
    "custom_lifecycle_stages",
    "deals",
    "leads",
    "markers",
    "owner_tasks",
    "recycling",
    "came_back",
    "marketing_notices",
    "reasons",
)


def rules_from(document: CommentedMap, problems: Problems) -> NurtureRules | None:
    top = known_fields(document, Where(1), TOP_KEYS, problems)
    _check_version(top, problems)
    context = Context(stages=_allowed_stages(top, problems))
    settings = {
        name: read_section(section, *top.get(name, (None, Where(1))), context, problems)
        for name, section in SETTINGS_SECTIONS.items()
    }
    if "reasons" not in top:
        problems.add(Where(1), "the `reasons:` section is missing; list the lost reasons under it")
        return None
    recycling = settings["recycling"]
    if recycling is not None:
        context = replace(context, default_stage=recycling.default_lifecycle_stage)
    context = replace(context, notices=settings["marketing_notices"])
    reasons = _reasons(*top["reasons"], context, problems)
    if problems.messages or None in settings.values():
        return None
    return NurtureRules(reasons=reasons, **settings)


def _check_version(top: Fields, problems: Problems) -> None:
    if "version" not in top:
        problems.add(Where(1), f"`version: {SUPPORTED_VERSION}` is missing; add it as the first line")
        return
    value, where = top["version"]
    if value != SUPPORTED_VERSION or isinstance(value, bool):
        problems.add(where, f"{kind(value)} is not a supported version; write version: {SUPPORTED_VERSION}")


def _allowed_stages(top: Fields, problems: Problems) -> frozenset[str]:
    custom: set[str] = set()
    if "custom_lifecycle_stages" in top:
        value, where = top["custom_lifecycle_stages"]
        for item, item_where in items(value, where, problems, "- partner"):
            stage = text(item, item_where, problems, "partner")
            if stage:
                custom.add(stage)
    return frozenset(STANDARD_LIFECYCLE_STAGES) | custom


def _reasons(value: object, where: Where, context: Context, problems: Problems) -> tuple[ReasonRule, ...]:
    section = as_section(
        value, where, problems, "reasons:\n  Pricing:\n    nurture:\n      - workflow: 12345"
    )
    if section is None:
        return ()
    if not section:
        problems.add(where, "no reasons are listed; add each lost reason of the picklist under `reasons:`")
    placed: list[tuple[ReasonRule, Where]] = []
    for label in section:
        reason_where = where.key(str(label), key_line(section, label))
        reason_context = replace(context, reason=str(label).strip())
        rule = read_section(REASON, section[label], reason_where, reason_context, problems)
        if rule is not None:
            placed.append((rule, reason_where))
    _report_same_reasons(placed, problems)
    return tuple(rule for rule, _ in placed)


def _fold(label: str) -> str:
    return " ".join(label.split()).casefold()


def _report_same_reasons(placed: list[tuple[ReasonRule, Where]], problems: Problems) -> None:
    """A deal's reason is matched on a rule's value or label, ignoring case and spacing, so two
    rules sharing either after folding would make the match depend on their order in the file."""
    first_seen: dict[str, tuple[str, int]] = {}
    for rule, where in placed:
        folded = dict.fromkeys((_fold(rule.label), _fold(rule.value)))
        clash = next((first_seen[seen] for seen in folded if seen in first_seen), None)
        if clash is not None:
            problems.add(
                where,
                f"'{rule.label}' is the same reason as '{clash[0]}' on line {clash[1]} (reasons match "
                "on label or value, ignoring case and spaces); keep one entry",
            )
            continue
        for seen in folded:
            first_seen[seen] = (rule.label, where.line)
