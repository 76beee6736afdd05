"""What each key of the nurture YAML means: one table per section (see `table`)."""

from __future__ import annotations

import math
import re
import string
from dataclasses import fields as dataclass_fields
from typing import Any

from handoff_worker.domain.nurture import (
    CameBackTriggers,
    DealRules,
    LeadRules,
    MarkerProperties,
    MarketingNotices,
    Nurture,
    NurtureMethod,
    OwnerTasks,
    ReasonRule,
    RecyclingRules,
    SecondLossPolicy,
    TellMarketing,
)
from handoff_worker.nurture_config.table import Context, Key, Reader, Section, model, read_section
from handoff_worker.nurture_config.values import (
    Fields,
    as_section,
    items,
    key_line,
    lifecycle_stage,
    numeric_id,
    property_name,
    text,
    yes_no,
)
from handoff_worker.nurture_config.yaml_reader import Problems, Where, kind

# Placeholders the owner-task subjects may use; the engine fills them in.
TASK_SUBJECT_PLACEHOLDERS = frozenset({"deal_name"})
NURTURE_METHOD_KEYS = ("workflow", "list", "property")
# The owner task's due date is computed from it; past a year it is no deadline at all, and
# infinity would crash the task after the handoff was recorded.
MAX_SLA_HOURS = 8760
# A follow-up date further out than this is a typo (days for hours, an extra digit), not a plan.
MAX_FOLLOW_UP_DAYS = 3650
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


# ---------------------------------------------------------------------------------------------
# Readers for the tables
# ---------------------------------------------------------------------------------------------


def _text(example: str) -> Reader:
    return lambda value, where, _context, problems: text(value, where, problems, example)


def _property(example: str) -> Reader:
    return lambda value, where, _context, problems: property_name(value, where, problems, example)


def _yes_no(value: object, where: Where, _context: Context, problems: Problems) -> bool | None:
    return yes_no(value, where, problems)


def _stage(value: object, where: Where, context: Context, problems: Problems) -> str | None:
    return lifecycle_stage(value, where, context.stages, problems)


def _stages(value: object, where: Where, context: Context, problems: Problems) -> frozenset[str]:
    return frozenset(
        stage
        for item, item_where in items(value, where, problems, "[customer, evangelist]")
        if (stage := lifecycle_stage(item, item_where, context.stages, problems))
    )


def _lead_statuses(value: object, where: Where, _context: Context, problems: Problems) -> frozenset[str]:
    # HubSpot's option values are case-sensitive: kept as written.
    return frozenset(
        status
        for item, item_where in items(value, where, problems, "[IN_PROGRESS, OPEN_DEAL, CONNECTED]")
        if (status := text(item, item_where, problems, "IN_PROGRESS"))
    )


def _second_loss(
    value: object, where: Where, _context: Context, problems: Problems
) -> SecondLossPolicy | None:
    choices = ", ".join(p.value for p in SecondLossPolicy)
    if isinstance(value, str) and value.strip().casefold() in {p.value for p in SecondLossPolicy}:
        return SecondLossPolicy(value.strip().casefold())
    problems.add(where, f"{kind(value)} is not one of {choices}; write e.g. second_loss: keep")
    return None


def _hours(value: object, where: Where, _context: Context, problems: Problems) -> float | None:
    if not isinstance(value, int | float) or isinstance(value, bool) or math.isnan(value):
        problems.add(where, f"{kind(value)} is not a number of hours; write e.g. sla_hours: 24")
        return None
    if not 0 < value <= MAX_SLA_HOURS:
        problems.add(
            where,
            f"{kind(value)} is not a number of hours a deal owner can be given; write more than 0 "
            f"and at most {MAX_SLA_HOURS} (a year), e.g. sla_hours: 24",
        )
        return None
    return float(value)


def _days(value: object, where: Where, _context: Context, problems: Problems) -> int | None:
    if value is None:  # left empty: no follow-up date
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_FOLLOW_UP_DAYS:
        problems.add(
            where,
            f"{kind(value)} is not a number of days; write a whole number from 1 to "
            f"{MAX_FOLLOW_UP_DAYS} (ten years), e.g. follow_up_after_days: 90, or remove the line "
            "for no follow-up date",
        )
        return None
    return value


def _optional_id(what: str, hint: str) -> Reader:
    """A numeric id that may be left empty (the feature it names is then off)."""

    def read(value: object, where: Where, _context: Context, problems: Problems) -> str | None:
        return None if value is None else numeric_id(value, where, problems, what, hint)

    return read


_owner = _optional_id(  # left empty: no escalation
    "HubSpot owner",
    "write the owner's numeric id (Settings > Users & Teams), e.g. escalate_to_owner: 12345678",
)
_hub_id = _optional_id(
    "Hub ID", "write your account's Hub ID (account menu, top right), e.g. hub_id: 1234567"
)
_task_owner = _optional_id(
    "HubSpot owner",
    "write the marketing owner's numeric id (Settings > Users & Teams), e.g. task_owner: 12345678",
)


def _task_subject(value: object, where: Where, _context: Context, problems: Problems) -> str | None:
    subject = text(value, where, problems, '"Add a lost reason to {deal_name}"')
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


def _stage_ids_by_pipeline(
    value: object, where: Where, _context: Context, problems: Problems
) -> dict[str, frozenset[str]]:
    example = "{default: [closedlost, '12345678']}  (pipeline id: [stage ids])"
    section = as_section(value, where, problems, example)
    if section is None:
        return {}
    result: dict[str, frozenset[str]] = {}
    for pipeline in section:
        pipeline_where = where.key(str(pipeline), key_line(section, pipeline))
        ids = {
            stage_id
            for item, item_where in items(section[pipeline], pipeline_where, problems, example)
            if (stage_id := text(item, item_where, problems, "closedlost"))
        }
        result[str(pipeline)] = frozenset(ids)
    return result


def _object_id(what: str, hint: str) -> Reader:
    def read(value: object, where: Where, _context: Context, problems: Problems) -> str | None:
        if value is None:
            problems.add(where, f"the {what} id is missing; write e.g. {what}: 12345")
            return None
        return numeric_id(value, where, problems, what, hint)

    return read


def _nested(section: Section) -> Reader:
    return lambda value, where, context, problems: read_section(section, value, where, context, problems)


def _nurtures(value: object, where: Where, context: Context, problems: Problems) -> tuple[Nurture, ...]:
    return tuple(
        nurture
        for item, item_where in items(value, where, problems, "\n  - workflow: 12345")
        if (nurture := read_section(NURTURE, item, item_where, context, problems)) is not None
    )


# ---------------------------------------------------------------------------------------------
# The tables
# ---------------------------------------------------------------------------------------------


def _deal_rules(values: dict[str, Any], _context: Context) -> DealRules:
    stages = values.pop("stages", {})
    return DealRules(**values, **stages)


STAGES = Section(
    keys=(
        Key("extra_lost", _stage_ids_by_pipeline, "extra_lost_stage_ids"),
        Key("excluded", _stage_ids_by_pipeline, "excluded_stage_ids"),
    ),
    build=lambda values, _context: values,
    example="stages:\n    extra_lost: {default: [closedlost]}",
)
DEALS = Section(
    keys=(Key("reason_property", _property("closed_lost_reason")), Key("stages", _nested(STAGES))),
    build=_deal_rules,
    example="deals:\n  reason_property: ...",
)
LEADS = Section(
    keys=(
        Key("enabled", _yes_no),
        Key("status_property", _property("hs_lead_status")),
        Key("unqualified_value", _text("UNQUALIFIED")),
        Key("reason_property", _property("handoff_unqualified_reason")),
    ),
    build=model(LeadRules),
    example="leads:\n  enabled: ...",
)
MARKERS = Section(
    # Each marker's default name is the example of what to write.
    keys=tuple(
        Key(marker.name, _property(getattr(MarkerProperties(), marker.name)))
        for marker in dataclass_fields(MarkerProperties)
    ),
    build=model(MarkerProperties),
    example="markers:\n  recycled_at: ...",
)
OWNER_TASKS = Section(
    keys=(
        Key("sla_hours", _hours),
        Key("subject", _task_subject),
        Key("escalate_to_owner", _owner, "escalation_owner_id"),
        Key("escalation_subject", _task_subject),
    ),
    build=model(OwnerTasks),
    example="owner_tasks:\n  sla_hours: ...",
)
RECYCLING = Section(
    keys=(
        Key("lifecycle_stage", _stage, "default_lifecycle_stage"),
        Key("skip_contacts_with_open_deals", _yes_no),
        Key("protect_customers", _yes_no),
        Key("customer_lifecycle_stages", _stages),
        Key("second_loss", _second_loss),
    ),
    build=model(RecyclingRules),
    example="recycling:\n  lifecycle_stage: ...",
)
CAME_BACK = Section(
    keys=(
        Key("new_open_deal", _yes_no),
        Key("reopened_deal", _yes_no),
        Key("lifecycle_stages", _stages),
        Key("lead_statuses", _lead_statuses),
    ),
    build=model(CameBackTriggers),
    example="came_back:\n  new_open_deal: ...",
)


def _env_name(value: object, where: Where, _context: Context, problems: Problems) -> str | None:
    if value is None:
        return None
    if isinstance(value, str) and ENV_NAME.fullmatch(value.strip()):
        return value.strip()
    problems.add(
        where,
        f"{kind(value)} is not the name of an environment variable; write the variable's NAME (the "
        "URL itself is a secret and stays out of this file), e.g. webhook_url_env: MARKETING_WEBHOOK_URL",
    )
    return None


MARKETING_NOTICES = Section(
    keys=(
        Key("hub_id", _hub_id),
        Key("webhook_url_env", _env_name),
        Key("daily_digest", _yes_no),
    ),
    build=model(MarketingNotices),
    example="marketing_notices:\n  webhook_url_env: MARKETING_WEBHOOK_URL",
)
# The sections of settings, each filling the NurtureRules field of its name.
SETTINGS_SECTIONS = {
    "marketing_notices": MARKETING_NOTICES,
    "came_back": CAME_BACK,
    "deals": DEALS,
    "leads": LEADS,
    "markers": MARKERS,
    "owner_tasks": OWNER_TASKS,
    "recycling": RECYCLING,
}


def _property_pair(values: dict[str, Any], _context: Context) -> tuple[str, str]:
    return values["name"], values["value"]


PROPERTY_NURTURE = Section(
    keys=(Key("name", _property("nurture_track")), Key("value", _text("pricing"))),
    build=_property_pair,
    example="property: {name: nurture_track, value: pricing}",
    required=("name", "value"),
)


def _one_method(fields: Fields, where: Where, _context: Context, problems: Problems) -> bool:
    methods = [method for method in NURTURE_METHOD_KEYS if method in fields]
    if len(methods) == 1:
        return True
    chosen = f"has {' and '.join(methods)}" if methods else "names no method"
    problems.add(
        where,
        f"this nurture {chosen}; give exactly one of workflow: <id>, list: <id> or "
        "property: {name: ..., value: ...} per entry (start another '- ' line for a second one)",
    )
    return False


def _nurture(values: dict[str, Any], context: Context) -> Nurture | None:
    name: str | None = values.get("name")
    if "workflow" in values:
        target = values["workflow"]
        return Nurture(
            NurtureMethod.WORKFLOW, name or f"{context.reason} (workflow {target})", workflow_id=target
        )
    if "list" in values:
        target = values["list"]
        return Nurture(NurtureMethod.LIST, name or f"{context.reason} (list {target})", list_id=target)
    if "property" in values:
        watched, value = values["property"]
        return Nurture(
            NurtureMethod.PROPERTY,
            name or f"{context.reason} ({watched}={value})",
            property_name=watched,
            property_value=value,
        )
    return None  # the method's value was wrong, and that is reported


NURTURE = Section(
    keys=(
        Key(
            "workflow",
            _object_id("workflow", "write the numeric id from the workflow's URL, e.g. workflow: 12345"),
        ),
        Key(
            "list",
            _object_id("list", "write the numeric id from the list's URL (ILS list id), e.g. list: 678"),
        ),
        Key("property", _nested(PROPERTY_NURTURE)),
        Key("name", _text('"Pricing nurture"')),
    ),
    build=_nurture,
    example="- workflow: 12345",
    check=_one_method,
)


def _nurtured_only_if_recycled(fields: Fields, _where: Where, context: Context, problems: Problems) -> bool:
    # Only a written `false` turns recycling off: an unreadable value is reported once, and
    # treating it as true avoids follow-on complaints about the nurtures.
    if "recycle" in fields and fields["recycle"][0] is False and "nurture" in fields:
        nurtures, where = fields["nurture"]
        if nurtures:
            problems.add(
                where,
                f"'{context.reason}' has recycle: false, so its contacts are never nurtured; remove "
                "the nurture list or set recycle: true",
            )
    if "recycle" in fields and fields["recycle"][0] is False and "follow_up_after_days" in fields:
        _days_value, where = fields["follow_up_after_days"]
        problems.add(
            where,
            f"'{context.reason}' has recycle: false, so its contacts get no follow-up date (it is "
            "written with the recycling markers); remove follow_up_after_days or set recycle: true",
        )
    return True


def _message(value: object, where: Where, context: Context, problems: Problems) -> bool | None:
    wanted = yes_no(value, where, problems)
    notices = context.notices
    if wanted and isinstance(notices, MarketingNotices) and not (notices.webhook_url_env and notices.hub_id):
        missing = " and ".join(
            key
            for key, set_ in (("webhook_url_env", notices.webhook_url_env), ("hub_id", notices.hub_id))
            if not set_
        )
        problems.add(
            where,
            f"'{context.reason}' asks for a message, but marketing_notices has no {missing}; add them "
            "under marketing_notices: (e.g. webhook_url_env: MARKETING_WEBHOOK_URL, hub_id: 1234567) "
            "or set message: false",
        )
        return None
    return wanted


def _one_way_to_tell(fields: Fields, where: Where, context: Context, problems: Problems) -> bool:
    if "task_owner" in fields or "message" in fields:
        return True
    problems.add(
        where,
        f"'{context.reason}' has tell_marketing without task_owner or message; add task_owner: <owner id> "
        "and/or message: true, or remove tell_marketing",
    )
    return False


TELL_MARKETING = Section(
    keys=(Key("task_owner", _task_owner, "task_owner_id"), Key("message", _message)),
    build=model(TellMarketing),
    example="tell_marketing:\n      task_owner: 12345678\n      message: true",
    check=_one_way_to_tell,
)


def _reason_rule(values: dict[str, Any], context: Context) -> ReasonRule:
    recycle = values.get("recycle", True)
    return ReasonRule(
        label=context.reason,
        value=values.get("value", context.reason),
        recycle=recycle,
        lifecycle_stage=values.get("lifecycle_stage", context.default_stage if recycle else None),
        nurtures=values.get("nurture", ()),
        follow_up_after_days=values.get("follow_up_after_days"),
        tell_marketing=values.get("tell_marketing"),
    )


REASON = Section(
    keys=(
        Key("value", _text("pricing")),
        Key("recycle", _yes_no),
        Key("lifecycle_stage", _stage),
        Key("nurture", _nurtures),
        Key("follow_up_after_days", _days),
        Key("tell_marketing", _nested(TELL_MARKETING)),
    ),
    build=_reason_rule,
    example="Pricing:\n    nurture:\n      - workflow: 12345",
    check=_nurtured_only_if_recycled,
)
