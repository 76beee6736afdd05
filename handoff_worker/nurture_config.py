"""The marketers' nurture YAML: read, check every key, and turn into `NurtureRules`.

Every problem in a file is collected before anything is raised, so a marketer fixes a file in one
pass instead of one error per run. Each message names the file, the line, the key path, the bad
value and what is allowed there.

`RulesStore` keeps the rules of a running process fresh: it re-reads the file at most every N
seconds and swaps in a new version only when the whole file is valid.
"""

from __future__ import annotations

import difflib
import hashlib
import logging
import re
import string
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, SequenceNode

from handoff_worker.domain.nurture import (
    DealRules,
    LeadRules,
    MarkerProperties,
    Nurture,
    NurtureMethod,
    NurtureRules,
    OwnerTasks,
    ReasonRule,
    RecyclingRules,
)
from handoff_worker.domain.rules import LIFECYCLE_ORDER
from handoff_worker.errors import NurtureConfigError

log = logging.getLogger(__name__)

SUPPORTED_VERSION = 1
# HubSpot's standard stages: the ordered ones, and "other", which stands outside the order.
STANDARD_LIFECYCLE_STAGES = (*LIFECYCLE_ORDER, "other")
# Placeholders the owner-task subjects may use; the engine fills them in.
TASK_SUBJECT_PLACEHOLDERS = frozenset({"deal_name"})
# HubSpot internal property names: a letter, then letters, digits or underscores.
_PROPERTY_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_DIGITS_RE = re.compile(r"^[0-9]+$")

TOP_KEYS = (
    "version",
    "custom_lifecycle_stages",
    "deals",
    "leads",
    "markers",
    "owner_tasks",
    "recycling",
    "reasons",
)
DEAL_KEYS = ("reason_property", "stages")
STAGE_KEYS = ("extra_lost", "excluded")
LEAD_KEYS = ("enabled", "status_property", "unqualified_value", "reason_property")
MARKER_KEYS = ("recycled_at", "reason", "source_deal")
OWNER_TASK_KEYS = ("sla_hours", "subject", "escalate_to_owner", "escalation_subject")
RECYCLING_KEYS = (
    "lifecycle_stage",
    "skip_contacts_with_open_deals",
    "protect_customers",
    "customer_lifecycle_stages",
)
REASON_KEYS = ("value", "recycle", "lifecycle_stage", "nurture")
NURTURE_METHOD_KEYS = ("workflow", "list", "property")
NURTURE_KEYS = (*NURTURE_METHOD_KEYS, "name")
NURTURE_PROPERTY_KEYS = ("name", "value")


# ---------------------------------------------------------------------------------------------
# Where a problem is, and the list of problems found so far
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Where:
    """A place in the file: its line (1-based) and the key path marketers can follow."""

    line: int
    keys: tuple[str, ...] = ()

    def key(self, name: str, line: int) -> _Where:
        return _Where(line, (*self.keys, name))

    def item(self, index: int, line: int) -> _Where:
        *parents, last = self.keys or ("",)
        return _Where(line, (*parents, f"{last}[{index}]"))

    def __str__(self) -> str:
        return " > ".join(self.keys) if self.keys else "(top of the file)"


class _Problems:
    def __init__(self, source: str) -> None:
        self.source = source
        self._found: list[tuple[int, str]] = []

    def add(self, where: _Where, message: str) -> None:
        self._found.append((where.line, f"{self.source}:{where.line} {where}: {message}"))

    def add_file(self, message: str) -> None:
        self._found.append((0, f"{self.source}: {message}"))

    @property
    def messages(self) -> list[str]:
        """In file order, so a marketer can work down the file."""
        return [message for _, message in sorted(self._found, key=lambda found: found[0])]


# ---------------------------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------------------------


def load_rules(path: str | Path, *, named_by: str = "HANDOFF_CONFIG") -> NurtureRules:
    """Read and validate the nurture YAML at `path`.

    `named_by` says where the path came from (a setting or a command-line option) so a missing
    file's message tells the reader what to change. Raises `NurtureConfigError` listing every
    problem found.
    """
    return parse_rules(read_config_text(path, named_by=named_by), str(path))


def read_config_text(path: str | Path, *, named_by: str = "HANDOFF_CONFIG") -> str:
    file = Path(path)
    if not file.is_file():
        what = "is a folder, not a file" if file.is_dir() else "which does not exist"
        raise NurtureConfigError(
            str(path),
            [
                f"{named_by} points to {path} {what}: set {named_by} to the nurture YAML's path "
                "(the project ships config/nurture.yaml to start from)"
            ],
        )
    try:
        return file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise NurtureConfigError(
            str(path), [f"{path} is not UTF-8 text (byte {exc.start}): save it as UTF-8"]
        ) from None


def parse_rules(text: str, source: str) -> NurtureRules:
    """Validate YAML `text` (from the file named `source`, used in messages) into rules."""
    problems = _Problems(source)
    document = _parse_yaml(text, problems)
    rules = _rules_from(document, problems) if document is not None else None
    if problems.messages or rules is None:
        raise NurtureConfigError(source, problems.messages)
    return rules


def content_version(text: str) -> str:
    """A short content hash: the rules version recorded beside every handoff."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# YAML: syntax, duplicate keys, the document
# ---------------------------------------------------------------------------------------------


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    # Duplicates are found on the node tree instead (all of them, with lines); the parser's own
    # check stops at the first one.
    yaml.allow_duplicate_keys = True
    return yaml


def _parse_yaml(text: str, problems: _Problems) -> CommentedMap | None:
    if not text.strip() or _only_comments(text):
        problems.add_file(
            "the file is empty: it needs at least `version: 1` and a `reasons:` section "
            "(see docs/nurture-config.md)"
        )
        return None
    try:
        root = _yaml().compose(text)
        _report_duplicate_keys(root, problems)
        document = _yaml().load(text)
    except MarkedYAMLError as exc:
        problems.add_file(_syntax_message(exc))
        return None
    except YAMLError as exc:  # errors without a position are rare; still say what the parser saw
        problems.add_file(f"the file is not valid YAML: {exc}")
        return None
    if not isinstance(document, CommentedMap):
        problems.add(
            _Where(1),
            f"the file must be a set of `key: value` lines (version, reasons, ...), not {_kind(document)}",
        )
        return None
    return document


def _only_comments(text: str) -> bool:
    return all(not line.strip() or line.lstrip().startswith("#") for line in text.splitlines())


def _syntax_message(exc: MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "somewhere"
    problem = exc.problem or exc.context or "unreadable YAML"
    hint = ""
    if "'\\t'" in problem or "\t" in problem:
        hint = "; indent with spaces, not tabs"
    return (
        f"YAML syntax error at {where}: {problem}{hint}. Check indentation, colons after keys and "
        "closing quotes or brackets around that spot"
    )


def _report_duplicate_keys(node: Node | None, problems: _Problems, path: tuple[str, ...] = ()) -> None:
    if isinstance(node, MappingNode):
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in first_line:
                problems.add(
                    _Where(line, (*path, key)),
                    f"'{key}' appears twice (first on line {first_line[key]}); YAML keeps only "
                    "one of them: merge the two entries into one",
                )
            else:
                first_line[key] = line
            _report_duplicate_keys(value_node, problems, (*path, key))
    elif isinstance(node, SequenceNode):
        parent = path[-1] if path else ""
        for index, child in enumerate(node.value):
            _report_duplicate_keys(child, problems, (*path[:-1], f"{parent}[{index}]"))


# ---------------------------------------------------------------------------------------------
# Reading values, each check adding a problem and returning None when the value is wrong
# ---------------------------------------------------------------------------------------------


def _kind(value: object) -> str:
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return f"yes/no ({str(value).lower()})"
    if isinstance(value, CommentedMap | dict):
        return "a section of keys"
    if isinstance(value, CommentedSeq | list):
        return "a list"
    if isinstance(value, int | float):
        return f"the number {value}"
    return f"{str(value)!r}"


def _fields(
    mapping: CommentedMap, where: _Where, allowed: Sequence[str], problems: _Problems
) -> dict[str, tuple[Any, _Where]]:
    """The known keys of a section with where each is; unknown keys become problems."""
    found: dict[str, tuple[Any, _Where]] = {}
    for key in mapping:
        line = _key_line(mapping, key)
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


def _key_line(mapping: CommentedMap, key: object) -> int:
    try:
        return int(mapping.lc.key(key)[0]) + 1
    except (KeyError, TypeError, AttributeError):  # keys merged in with `<<:` carry no position
        return int(mapping.lc.line) + 1


def _section(value: object, where: _Where, problems: _Problems, example: str) -> CommentedMap | None:
    if value is None:
        return CommentedMap()  # `deals:` with nothing under it means "all defaults"
    if isinstance(value, CommentedMap):
        return value
    problems.add(where, f"{_kind(value)} is not a section; indent keys under it, e.g. {example}")
    return None


def _text(value: object, where: _Where, problems: _Problems, example: str) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)  # numbers are fine as text: an option value like 2024
    problems.add(where, f"{_kind(value)} is not allowed; write some text, e.g. {example}")
    return None


def _yes_no(value: object, where: _Where, problems: _Problems) -> bool | None:
    if isinstance(value, bool):
        return value
    # YAML 1.2 reads yes/no/on/off as text, which surprises people used to older YAML.
    hint = " (yes/no/on/off are read as text here)" if isinstance(value, str) else ""
    problems.add(where, f"{_kind(value)} is not yes/no; write true or false{hint}")
    return None


def _property_name(value: object, where: _Where, problems: _Problems, example: str) -> str | None:
    if isinstance(value, str) and _PROPERTY_NAME_RE.match(value.strip()):
        return value.strip()
    problems.add(
        where,
        f"{_kind(value)} is not a HubSpot property's internal name; write the internal name "
        f"(letters, digits and underscores, shown in HubSpot's property settings), e.g. {example}",
    )
    return None


def _numeric_id(value: object, where: _Where, problems: _Problems, what: str, example: str) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return str(value)
    if isinstance(value, str) and _DIGITS_RE.match(value.strip()):
        return value.strip()
    problems.add(where, f"{_kind(value)} is not a {what} id; {example}")
    return None


def _items(value: object, where: _Where, problems: _Problems, example: str) -> Iterator[tuple[Any, _Where]]:
    if value is None:
        return
    if not isinstance(value, CommentedSeq):
        problems.add(
            where, f"{_kind(value)} is not a list; write one item per line after '- ', e.g. {example}"
        )
        return
    for index, item in enumerate(value):
        yield item, where.item(index, int(value.lc.item(index)[0]) + 1)


# ---------------------------------------------------------------------------------------------
# The sections
# ---------------------------------------------------------------------------------------------


def _rules_from(document: CommentedMap, problems: _Problems) -> NurtureRules | None:
    top = _fields(document, _Where(1), TOP_KEYS, problems)
    _check_version(top, problems)
    stages = _allowed_stages(top, problems)
    deals = _deal_rules(top, problems)
    leads = _lead_rules(top, problems)
    markers = _marker_properties(top, problems)
    owner_tasks = _owner_tasks(top, problems)
    recycling = _recycling_rules(top, stages, problems)
    if "reasons" not in top:
        problems.add(_Where(1), "the `reasons:` section is missing; list the lost reasons under it")
        return None
    reason_value, reason_where = top["reasons"]
    default_stage = recycling.default_lifecycle_stage if recycling else "lead"
    reasons = _reason_rules(reason_value, reason_where, stages, default_stage, problems)
    if problems.messages or None in (deals, leads, markers, owner_tasks, recycling):
        return None
    assert deals and leads and markers and owner_tasks and recycling  # for mypy: checked above
    return NurtureRules(
        reasons=reasons,
        deals=deals,
        leads=leads,
        markers=markers,
        owner_tasks=owner_tasks,
        recycling=recycling,
    )


def _check_version(top: dict[str, tuple[Any, _Where]], problems: _Problems) -> None:
    if "version" not in top:
        problems.add(_Where(1), f"`version: {SUPPORTED_VERSION}` is missing; add it as the first line")
        return
    value, where = top["version"]
    if value != SUPPORTED_VERSION or isinstance(value, bool):
        problems.add(where, f"{_kind(value)} is not a supported version; write version: {SUPPORTED_VERSION}")


def _allowed_stages(top: dict[str, tuple[Any, _Where]], problems: _Problems) -> frozenset[str]:
    custom: set[str] = set()
    if "custom_lifecycle_stages" in top:
        value, where = top["custom_lifecycle_stages"]
        for item, item_where in _items(value, where, problems, "- partner"):
            stage = _text(item, item_where, problems, "partner")
            if stage:
                custom.add(stage)
    return frozenset(STANDARD_LIFECYCLE_STAGES) | custom


def _lifecycle_stage(
    value: object, where: _Where, allowed: frozenset[str], problems: _Problems
) -> str | None:
    stage = _text(value, where, problems, "lead")
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


def _section_fields(
    top: dict[str, tuple[Any, _Where]], name: str, allowed: Sequence[str], problems: _Problems
) -> dict[str, tuple[Any, _Where]] | None:
    """The keys of one top-level section; {} when the section is left out (defaults apply)."""
    if name not in top:
        return {}
    value, where = top[name]
    section = _section(value, where, problems, f"{name}:\n  {allowed[0]}: ...")
    return None if section is None else _fields(section, where, allowed, problems)


def _deal_rules(top: dict[str, tuple[Any, _Where]], problems: _Problems) -> DealRules | None:
    fields = _section_fields(top, "deals", DEAL_KEYS, problems)
    if fields is None:
        return None
    defaults = DealRules()
    reason_property = defaults.reason_property
    if "reason_property" in fields:
        reason_property = _property_name(*fields["reason_property"], problems, "closed_lost_reason") or ""
    extra_lost: dict[str, frozenset[str]] = {}
    excluded: dict[str, frozenset[str]] = {}
    if "stages" in fields:
        value, where = fields["stages"]
        section = _section(value, where, problems, "stages:\n    extra_lost: {default: [closedlost]}")
        for name, (stage_value, stage_where) in (
            _fields(section, where, STAGE_KEYS, problems) if section is not None else {}
        ).items():
            target = extra_lost if name == "extra_lost" else excluded
            target.update(_stage_ids_by_pipeline(stage_value, stage_where, problems))
    return DealRules(
        reason_property=reason_property,
        extra_lost_stage_ids=extra_lost,
        excluded_stage_ids=excluded,
    )


def _stage_ids_by_pipeline(value: object, where: _Where, problems: _Problems) -> dict[str, frozenset[str]]:
    example = "{default: [closedlost, '12345678']}  (pipeline id: [stage ids])"
    section = _section(value, where, problems, example)
    if section is None:
        return {}
    result: dict[str, frozenset[str]] = {}
    for pipeline in section:
        pipeline_where = where.key(str(pipeline), _key_line(section, pipeline))
        ids = {
            stage_id
            for item, item_where in _items(section[pipeline], pipeline_where, problems, example)
            if (stage_id := _text(item, item_where, problems, "closedlost"))
        }
        result[str(pipeline)] = frozenset(ids)
    return result


def _lead_rules(top: dict[str, tuple[Any, _Where]], problems: _Problems) -> LeadRules | None:
    fields = _section_fields(top, "leads", LEAD_KEYS, problems)
    if fields is None:
        return None
    defaults = LeadRules()
    enabled = defaults.enabled
    if "enabled" in fields:
        enabled = bool(_yes_no(*fields["enabled"], problems))
    status_property = defaults.status_property
    if "status_property" in fields:
        status_property = _property_name(*fields["status_property"], problems, "hs_lead_status") or ""
    unqualified_value = defaults.unqualified_value
    if "unqualified_value" in fields:
        unqualified_value = _text(*fields["unqualified_value"], problems, "UNQUALIFIED") or ""
    reason_property = defaults.reason_property
    if "reason_property" in fields:
        reason_property = (
            _property_name(*fields["reason_property"], problems, "handoff_unqualified_reason") or ""
        )
    return LeadRules(
        enabled=enabled,
        status_property=status_property,
        unqualified_value=unqualified_value,
        reason_property=reason_property,
    )


def _marker_properties(top: dict[str, tuple[Any, _Where]], problems: _Problems) -> MarkerProperties | None:
    fields = _section_fields(top, "markers", MARKER_KEYS, problems)
    if fields is None:
        return None
    defaults = MarkerProperties()
    names: dict[str, str] = {}
    for key in MARKER_KEYS:
        names[key] = getattr(defaults, key)
        if key in fields:
            names[key] = _property_name(*fields[key], problems, names[key]) or ""
    return MarkerProperties(**names)


def _owner_tasks(top: dict[str, tuple[Any, _Where]], problems: _Problems) -> OwnerTasks | None:
    fields = _section_fields(top, "owner_tasks", OWNER_TASK_KEYS, problems)
    if fields is None:
        return None
    defaults = OwnerTasks()
    sla_hours = defaults.sla_hours
    if "sla_hours" in fields:
        value, where = fields["sla_hours"]
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            sla_hours = float(value)
        else:
            problems.add(where, f"{_kind(value)} is not a number of hours; write e.g. sla_hours: 24")
    subject = defaults.subject
    if "subject" in fields:
        subject = _task_subject(*fields["subject"], problems) or ""
    escalation_subject = defaults.escalation_subject
    if "escalation_subject" in fields:
        escalation_subject = _task_subject(*fields["escalation_subject"], problems) or ""
    escalation_owner_id = defaults.escalation_owner_id
    if "escalate_to_owner" in fields:
        value, where = fields["escalate_to_owner"]
        if value is not None:  # left empty: no escalation
            escalation_owner_id = _numeric_id(
                value,
                where,
                problems,
                "HubSpot owner",
                "write the owner's numeric id (Settings > Users & Teams), e.g. escalate_to_owner: 12345678",
            )
    return OwnerTasks(
        sla_hours=sla_hours,
        subject=subject,
        escalation_owner_id=escalation_owner_id,
        escalation_subject=escalation_subject,
    )


def _task_subject(value: object, where: _Where, problems: _Problems) -> str | None:
    subject = _text(value, where, problems, '"Add a lost reason to {deal_name}"')
    if subject is None:
        return None
    try:
        used = {name for _, name, _, _ in string.Formatter().parse(subject) if name is not None}
    except ValueError:
        used = {"<unbalanced { or }>"}
    unknown = used - TASK_SUBJECT_PLACEHOLDERS
    if unknown:
        allowed = ", ".join("{" + p + "}" for p in sorted(TASK_SUBJECT_PLACEHOLDERS))
        problems.add(
            where,
            f"{subject!r} uses {', '.join(sorted(unknown))}; the only placeholder allowed is {allowed} "
            "(write {{ or }} for a literal brace)",
        )
        return None
    return subject


def _recycling_rules(
    top: dict[str, tuple[Any, _Where]], stages: frozenset[str], problems: _Problems
) -> RecyclingRules | None:
    fields = _section_fields(top, "recycling", RECYCLING_KEYS, problems)
    if fields is None:
        return None
    defaults = RecyclingRules()
    lifecycle_stage = defaults.default_lifecycle_stage
    if "lifecycle_stage" in fields:
        lifecycle_stage = _lifecycle_stage(*fields["lifecycle_stage"], stages, problems) or ""
    flags = {
        key: _yes_no(*fields[key], problems) if key in fields else getattr(defaults, key)
        for key in ("skip_contacts_with_open_deals", "protect_customers")
    }
    customer_stages = defaults.customer_lifecycle_stages
    if "customer_lifecycle_stages" in fields:
        value, where = fields["customer_lifecycle_stages"]
        customer_stages = frozenset(
            stage
            for item, item_where in _items(value, where, problems, "[customer, evangelist]")
            if (stage := _lifecycle_stage(item, item_where, stages, problems))
        )
    return RecyclingRules(
        default_lifecycle_stage=lifecycle_stage,
        skip_contacts_with_open_deals=bool(flags["skip_contacts_with_open_deals"]),
        protect_customers=bool(flags["protect_customers"]),
        customer_lifecycle_stages=customer_stages,
    )


def _reason_rules(
    value: object, where: _Where, stages: frozenset[str], default_stage: str, problems: _Problems
) -> tuple[ReasonRule, ...]:
    section = _section(value, where, problems, "reasons:\n  Pricing:\n    nurture:\n      - workflow: 12345")
    if section is None:
        return ()
    if not section:
        problems.add(where, "no reasons are listed; add each lost reason of the picklist under `reasons:`")
    placed: list[tuple[ReasonRule, _Where]] = []
    for label in section:
        reason_where = where.key(str(label), _key_line(section, label))
        rule = _reason_rule(str(label).strip(), section[label], reason_where, stages, default_stage, problems)
        if rule is not None:
            placed.append((rule, reason_where))
    _report_same_reasons(placed, problems)
    return tuple(rule for rule, _ in placed)


def _fold(text: str) -> str:
    return " ".join(text.split()).casefold()


def _report_same_reasons(placed: list[tuple[ReasonRule, _Where]], problems: _Problems) -> None:
    """A deal's reason is matched on a rule's value or label, ignoring case and spacing, so two
    rules sharing either after folding would make the match depend on their order in the file."""
    first_seen: dict[str, tuple[str, int]] = {}
    for rule, where in placed:
        folded = dict.fromkeys((_fold(rule.label), _fold(rule.value)))
        clash = next((first_seen[text] for text in folded if text in first_seen), None)
        if clash is not None:
            problems.add(
                where,
                f"'{rule.label}' is the same reason as '{clash[0]}' on line {clash[1]} (reasons match "
                "on label or value, ignoring case and spaces); keep one entry",
            )
            continue
        for text in folded:
            first_seen[text] = (rule.label, where.line)


def _reason_rule(
    label: str,
    value: object,
    where: _Where,
    stages: frozenset[str],
    default_stage: str,
    problems: _Problems,
) -> ReasonRule | None:
    section = _section(value, where, problems, "Pricing:\n    nurture:\n      - workflow: 12345")
    if section is None:
        return None
    fields = _fields(section, where, REASON_KEYS, problems)
    option_value = label
    if "value" in fields:
        option_value = _text(*fields["value"], problems, "pricing") or label
    recycle = True
    if "recycle" in fields:
        # An unreadable value is reported once; True avoids follow-on complaints about nurtures.
        recycle = _yes_no(*fields["recycle"], problems) is not False
    lifecycle_stage: str | None = default_stage if recycle else None
    if "lifecycle_stage" in fields:
        lifecycle_stage = _lifecycle_stage(*fields["lifecycle_stage"], stages, problems)
    nurtures: list[Nurture] = []
    if "nurture" in fields:
        nurture_value, nurture_where = fields["nurture"]
        if not recycle and nurture_value:
            problems.add(
                nurture_where,
                f"'{label}' has recycle: false, so its contacts are never nurtured; remove the "
                "nurture list or set recycle: true",
            )
        for item, item_where in _items(nurture_value, nurture_where, problems, "\n  - workflow: 12345"):
            nurture = _nurture(label, item, item_where, problems)
            if nurture is not None:
                nurtures.append(nurture)
    return ReasonRule(
        label=label,
        value=option_value,
        recycle=recycle,
        lifecycle_stage=lifecycle_stage,
        nurtures=tuple(nurtures),
    )


def _nurture(reason: str, value: object, where: _Where, problems: _Problems) -> Nurture | None:
    section = _section(value, where, problems, "- workflow: 12345")
    if section is None:
        return None
    fields = _fields(section, where, NURTURE_KEYS, problems)
    methods = [m for m in NURTURE_METHOD_KEYS if m in fields]
    if len(methods) != 1:
        chosen = f"has {' and '.join(methods)}" if methods else "names no method"
        problems.add(
            where,
            f"this nurture {chosen}; give exactly one of workflow: <id>, list: <id> or "
            "property: {name: ..., value: ...} per entry (start another '- ' line for a second one)",
        )
        return None
    method = NurtureMethod(methods[0])
    name = None
    if "name" in fields:
        name = _text(*fields["name"], problems, '"Pricing nurture"')
    return _nurture_of_method(method, reason, name, *fields[method.value], problems)


def _nurture_of_method(
    method: NurtureMethod, reason: str, name: str | None, value: object, where: _Where, problems: _Problems
) -> Nurture | None:
    if method is NurtureMethod.PROPERTY:
        return _property_nurture(reason, name, value, where, problems)
    what = "workflow" if method is NurtureMethod.WORKFLOW else "list"
    if value is None:
        problems.add(where, f"the {what} id is missing; write e.g. {what}: 12345")
        return None
    hint = (
        "write the numeric id from the workflow's URL, e.g. workflow: 12345"
        if method is NurtureMethod.WORKFLOW
        else "write the numeric id from the list's URL (ILS list id), e.g. list: 678"
    )
    target = _numeric_id(value, where, problems, what, hint)
    if target is None:
        return None
    label = name or f"{reason} ({what} {target})"
    if method is NurtureMethod.WORKFLOW:
        return Nurture(method=method, name=label, workflow_id=target)
    return Nurture(method=method, name=label, list_id=target)


def _property_nurture(
    reason: str, name: str | None, value: object, where: _Where, problems: _Problems
) -> Nurture | None:
    example = "property: {name: nurture_track, value: pricing}"
    section = _section(value, where, problems, example)
    if section is None:
        return None
    fields = _fields(section, where, NURTURE_PROPERTY_KEYS, problems)
    missing = [k for k in NURTURE_PROPERTY_KEYS if k not in fields]
    if missing:
        problems.add(where, f"{' and '.join(missing)} missing; write e.g. {example}")
    property_name = property_value = None
    if "name" in fields:
        property_name = _property_name(*fields["name"], problems, "nurture_track")
    if "value" in fields:
        property_value = _text(*fields["value"], problems, "pricing")
    if property_name is None or property_value is None:
        return None
    return Nurture(
        method=NurtureMethod.PROPERTY,
        name=name or f"{reason} ({property_name}={property_value})",
        property_name=property_name,
        property_value=property_value,
    )


# ---------------------------------------------------------------------------------------------
# Hot reload
# ---------------------------------------------------------------------------------------------


class LastGoodText(Protocol):
    """Somewhere shared to keep the text of the last valid file, so a process that starts while
    the file is broken still has the last good rules (the wiring keeps it in Redis)."""

    def load(self) -> str | None: ...

    def save(self, text: str) -> None: ...


class RulesStore:
    """The rules in force, re-read from the file at most every `check_every_seconds`.

    A valid change replaces the rules whole; an invalid change is logged (each problem once per
    bad version of the file) and the last good rules stay in force, so no handoff ever runs on a
    half-edited file. At start-up an invalid file raises `NurtureConfigError`, unless `last_good`
    holds the text of an earlier valid file: then that runs, with the file's problems logged.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        check_every_seconds: float = 30.0,
        named_by: str = "HANDOFF_CONFIG",
        clock: Callable[[], float] = time.monotonic,
        last_good: LastGoodText | None = None,
    ) -> None:
        self.path = Path(path)
        self.check_every_seconds = check_every_seconds
        self._named_by = named_by
        self._clock = clock
        self._lock = threading.Lock()
        self._last_good = last_good
        self._last_rejected_version: str | None = None
        # One tuple, swapped in one assignment, so readers never see rules and version disagree.
        self._state: tuple[NurtureRules, str] = self._first_rules()
        self._next_check = clock() + check_every_seconds

    def _first_rules(self) -> tuple[NurtureRules, str]:
        try:
            text = read_config_text(self.path, named_by=self._named_by)
            rules = parse_rules(text, str(self.path))
        except NurtureConfigError as exc:
            saved = self._last_good.load() if self._last_good is not None else None
            if saved is None:
                raise
            version = content_version(saved)
            log.error(
                "%s is invalid; running on the last good rules (version %s) until it is fixed",
                self.path,
                version,
            )
            for problem in exc.problems:
                log.error("nurture config problem: %s", problem)
            return parse_rules(saved, f"{self.path} (last good version {version})"), version
        self._remember(text)
        return rules, content_version(text)

    def _remember(self, text: str) -> None:
        if self._last_good is not None:
            self._last_good.save(text)

    @property
    def version(self) -> str:
        """Content hash of the file the rules in force came from."""
        return self._state[1]

    def current(self) -> NurtureRules:
        """The rules in force, after re-reading the file if the check interval has passed."""
        if self._clock() >= self._next_check:
            self.check_now()
        return self._state[0]

    def current_with_version(self) -> tuple[NurtureRules, str]:
        """Rules and their version read together, for audit records."""
        self.current()
        return self._state

    def check_now(self) -> bool:
        """Re-read the file now. True when new rules were taken in."""
        # A thread that finds another one checking simply keeps using the rules in force.
        if not self._lock.acquire(blocking=False):
            return False
        try:
            self._next_check = self._clock() + self.check_every_seconds
            return self._reload()
        finally:
            self._lock.release()

    def _reload(self) -> bool:
        try:
            text = read_config_text(self.path, named_by=self._named_by)
        except NurtureConfigError as exc:
            self._reject(f"unreadable:{exc.problems}", exc)
            return False
        version = content_version(text)
        if version == self._state[1]:
            return False
        try:
            rules = parse_rules(text, str(self.path))
        except NurtureConfigError as exc:
            self._reject(version, exc)
            return False
        self._state = (rules, version)
        self._last_rejected_version = None
        self._remember(text)
        log.info("nurture rules reloaded from %s (version %s)", self.path, version)
        return True

    def _reject(self, version: str, error: NurtureConfigError) -> None:
        if version == self._last_rejected_version:
            return
        self._last_rejected_version = version
        log.error(
            "%s changed but is invalid; the rules of version %s stay in force until it is fixed",
            self.path,
            self._state[1],
        )
        for problem in error.problems:
            log.error("nurture config problem: %s", problem)
