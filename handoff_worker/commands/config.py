"""`handoff-worker config ...`: check the nurture YAML, locally or against HubSpot, and create the
marker properties the worker writes.

The checks against HubSpot live in `remote_problems`, which takes any gateway, so they run the same
against HubSpot, the sandbox or anything else that speaks the gateway protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import click

from handoff_worker.domain.models import ObjectType, PropertyDefinition
from handoff_worker.domain.nurture import NurtureMethod, NurtureRules, ReasonRule
from handoff_worker.errors import HubSpotError, NotFoundError, NurtureConfigError, SettingsError
from handoff_worker.hubspot.protocol import HubSpotGateway
from handoff_worker.nurture_config import load_rules, read_config_text
from handoff_worker.nurture_config.yaml_reader import KeyLines
from handoff_worker.settings import Settings

CONTACT_TYPE_ID = ObjectType.CONTACT.type_id
# Every portal has this contact property group; creating a property in a group that does not
# exist is refused by HubSpot.
MARKER_GROUP = "contactinformation"
SETUP_HINT = "run `handoff-worker config setup-properties` to create it"

# Puts a problem at the file and line of the YAML key it is about: (key path, message) -> message.
Place = Callable[[tuple[str | int, ...], str], str]


def _unplaced(_keys: tuple[str | int, ...], message: str) -> str:
    return message


def in_file(source: str, lines: KeyLines) -> Place:
    """A `Place` that starts each problem with `source:line`, as problems found reading it do."""

    def place(keys: tuple[str | int, ...], message: str) -> str:
        line = lines.line(keys)
        return f"{source}:{line} {message}" if line is not None else f"{source}: {message}"

    return place


# ---------------------------------------------------------------------------------------------
# Checks against HubSpot
# ---------------------------------------------------------------------------------------------


def remote_problems(rules: NurtureRules, gateway: HubSpotGateway, place: Place = _unplaced) -> list[str]:
    """Everything in `rules` that HubSpot contradicts, in plain words. Empty when all is well.

    Raises `HubSpotError` only when HubSpot cannot be asked at all (network, token, rate limit).
    """
    return remote_check(rules, gateway, place)[0]


def remote_check(
    rules: NurtureRules, gateway: HubSpotGateway, place: Place = _unplaced
) -> tuple[list[str], list[str]]:
    """(problems, warnings): what HubSpot contradicts, and what works but deserves a look; each
    put by `place` at the YAML key it is about."""
    warnings: list[str] = []
    problems: list[str] = []
    problems += _reason_property_problems(
        ObjectType.DEAL,
        rules.deals.reason_property,
        ("deals", "reason_property"),
        rules.reasons,
        gateway,
        place,
    )
    if rules.leads.enabled:
        problems += _lead_problems(rules, gateway, place)
    problems += _workflow_problems(rules, gateway, warnings, place)
    problems += _list_problems(rules, gateway, place)
    problems += _property_nurture_problems(rules, gateway, place)
    problems += _marker_problems(rules, gateway, place)
    return problems, warnings


def _fold(text: str) -> str:
    return " ".join(text.split()).casefold()


def _property_or_none(
    gateway: HubSpotGateway, object_type: ObjectType, name: str
) -> PropertyDefinition | None:
    try:
        return gateway.get_property(object_type, name)
    except NotFoundError:
        return None


def _reason_property_problems(
    object_type: ObjectType,
    name: str,
    keys: tuple[str, str],
    reasons: Iterable[ReasonRule],
    gateway: HubSpotGateway,
    place: Place,
) -> list[str]:
    key = " > ".join(keys)
    definition = _property_or_none(gateway, object_type, name)
    if definition is None:
        return [
            place(
                keys,
                f"{key}: HubSpot has no {object_type.value[:-1]} property '{name}'; write the internal "
                "name of the property that holds the lost reason",
            )
        ]
    if not definition.options:
        return []  # free text (HubSpot's own closed_lost_reason): any label may be typed in
    return _option_problems(definition, key, list(reasons), place)


def _option_problems(
    definition: PropertyDefinition, key: str, reasons: list[ReasonRule], place: Place
) -> list[str]:
    option_keys = {_fold(o.value) for o in definition.options} | {_fold(o.label) for o in definition.options}
    problems = [
        place(
            ("reasons", rule.label),
            f"reasons > {rule.label}: '{rule.value}' is not an option of '{definition.name}' ({key}); "
            "fix the label or `value:` to match the picklist, or add the option in HubSpot",
        )
        for rule in reasons
        if _fold(rule.value) not in option_keys and _fold(rule.label) not in option_keys
    ]
    mapped = {_fold(rule.value) for rule in reasons} | {_fold(rule.label) for rule in reasons}
    problems += [
        place(
            ("reasons",),
            f"reasons: the option '{option.label}' of '{definition.name}' has no entry; add "
            f"'{option.label}:' under reasons (with recycle: false if it needs no nurture)",
        )
        for option in definition.options
        if not option.hidden and _fold(option.value) not in mapped and _fold(option.label) not in mapped
    ]
    return problems


def _lead_problems(rules: NurtureRules, gateway: HubSpotGateway, place: Place) -> list[str]:
    leads = rules.leads
    problems = _reason_property_problems(
        ObjectType.CONTACT, leads.reason_property, ("leads", "reason_property"), rules.reasons, gateway, place
    )
    status = _property_or_none(gateway, ObjectType.CONTACT, leads.status_property)
    if status is None:
        problems.append(
            place(
                ("leads", "status_property"),
                f"leads > status_property: HubSpot has no contact property '{leads.status_property}'; "
                "write the internal name of the lead status property (usually hs_lead_status)",
            )
        )
    elif status.options and leads.unqualified_value not in {o.value for o in status.options}:
        allowed = ", ".join(o.value for o in status.options)
        problems.append(
            place(
                ("leads", "unqualified_value"),
                f"leads > unqualified_value: '{leads.unqualified_value}' is not a value of "
                f"'{leads.status_property}'; use one of: {allowed}",
            )
        )
    return problems


# A nurture's place in the file: its reason's label and its index in that reason's `nurture:` list.
NurtureUse = tuple[str, int]


def _nurture_places(rules: NurtureRules, method: NurtureMethod) -> dict[str, list[NurtureUse]]:
    """Target id -> the nurtures that use it, so one missing workflow is reported once."""
    places: dict[str, list[NurtureUse]] = {}
    for rule in rules.reasons:
        for index, nurture in enumerate(rule.nurtures):
            target = nurture.workflow_id if method is NurtureMethod.WORKFLOW else nurture.list_id
            if nurture.method is method and target is not None:
                places.setdefault(target, []).append((rule.label, index))
    return places


def _used_by(uses: list[NurtureUse]) -> str:
    return "reasons > " + ", ".join(dict.fromkeys(label for label, _ in uses))


def _first_use(uses: list[NurtureUse], key: str) -> tuple[str | int, ...]:
    label, index = uses[0]
    return ("reasons", label, "nurture", index, key)


def _workflow_problems(
    rules: NurtureRules, gateway: HubSpotGateway, warnings: list[str], place: Place
) -> list[str]:
    wanted = _nurture_places(rules, NurtureMethod.WORKFLOW)
    if not wanted:
        return []
    flows = gateway.list_flows()
    legacy_ids = gateway.flow_to_workflow_ids([flow.id for flow in flows])
    # The YAML holds the id from the workflow's URL; accept it as either the legacy or the flow id.
    by_id = {flow.id: flow for flow in flows}
    by_id.update({legacy_ids[flow.id]: flow for flow in flows if flow.id in legacy_ids})
    problems: list[str] = []
    for workflow_id, labels in wanted.items():
        at = _first_use(labels, "workflow")
        flow = by_id.get(workflow_id)
        if flow is None:
            problems.append(
                place(
                    at,
                    f"{_used_by(labels)}: workflow {workflow_id} does not exist in HubSpot; copy the id "
                    "from the workflow's URL",
                )
            )
            continue
        if flow.object_type_id != CONTACT_TYPE_ID:
            problems.append(
                place(
                    at,
                    f"{_used_by(labels)}: workflow {workflow_id} ('{flow.name}') is not contact-based; "
                    "only contact workflows can enroll contacts: pick a contact workflow",
                )
            )
        if not flow.is_enabled:
            problems.append(
                place(
                    at,
                    f"{_used_by(labels)}: workflow {workflow_id} ('{flow.name}') is turned off; turn it "
                    "on in HubSpot or pick another workflow",
                )
            )
        if flow.re_enrollment:
            # The worker enrolls a contact once per episode; HubSpot would otherwise stop a second
            # enrollment itself, except in a workflow that allows re-enrollment.
            warnings.append(
                place(
                    at,
                    f"{_used_by(labels)}: workflow {workflow_id} ('{flow.name}') allows re-enrollment: "
                    "a contact that comes back to sales and is lost again gets the whole nurture again; "
                    "turn re-enrollment off in the workflow's enrollment settings unless that is wanted",
                )
            )
    return problems


def _list_problems(rules: NurtureRules, gateway: HubSpotGateway, place: Place) -> list[str]:
    problems: list[str] = []
    for list_id, labels in _nurture_places(rules, NurtureMethod.LIST).items():
        at = _first_use(labels, "list")
        try:
            info = gateway.get_list(list_id)
        except NotFoundError:
            problems.append(
                place(
                    at,
                    f"{_used_by(labels)}: list {list_id} does not exist in HubSpot; copy the id from "
                    "the list's URL",
                )
            )
            continue
        if info.object_type_id != CONTACT_TYPE_ID:
            problems.append(
                place(at, f"{_used_by(labels)}: list {list_id} ('{info.name}') is not a contact list")
            )
        if not info.is_static:
            problems.append(
                place(
                    at,
                    f"{_used_by(labels)}: list {list_id} ('{info.name}') is an active list; contacts can "
                    "only be added to a static list: pick or create a static one",
                )
            )
    return problems


def _property_nurture_problems(rules: NurtureRules, gateway: HubSpotGateway, place: Place) -> list[str]:
    problems: list[str] = []
    checked: dict[str, PropertyDefinition | None] = {}
    for rule in rules.reasons:
        for index, nurture in enumerate(rule.nurtures):
            if nurture.method is not NurtureMethod.PROPERTY or nurture.property_name is None:
                continue
            name = nurture.property_name
            if name not in checked:
                checked[name] = _property_or_none(gateway, ObjectType.CONTACT, name)
            definition = checked[name]
            where = f"reasons > {rule.label} > nurture"
            at: tuple[str | int, ...] = ("reasons", rule.label, "nurture", index, "property")
            if definition is None:
                problems.append(
                    place(at, f"{where}: HubSpot has no contact property '{name}'; create it or fix the name")
                )
            elif definition.options and nurture.property_value not in {o.value for o in definition.options}:
                allowed = ", ".join(o.value for o in definition.options)
                problems.append(
                    place(
                        at,
                        f"{where}: '{nurture.property_value}' is not a value of '{name}'; "
                        f"use one of: {allowed}",
                    )
                )
    return problems


def _marker_problems(rules: NurtureRules, gateway: HubSpotGateway, place: Place) -> list[str]:
    problems = []
    for key, definition in marker_definitions(rules).items():
        existing = _property_or_none(gateway, ObjectType.CONTACT, definition.name)
        at = ("markers", key)
        if existing is None:
            problems.append(
                place(
                    at, f"markers > {key}: HubSpot has no contact property '{definition.name}'; {SETUP_HINT}"
                )
            )
        elif key == "follow_up_on" and existing.type not in {"date", "datetime"}:
            problems.append(
                place(
                    at,
                    f"markers > {key}: HubSpot's contact property '{definition.name}' is a {existing.type}, "
                    "not a date; name a date property here, or delete it in HubSpot and run "
                    "`handoff-worker config setup-properties`",
                )
            )
    return problems


# ---------------------------------------------------------------------------------------------
# Marker properties
# ---------------------------------------------------------------------------------------------


def marker_definitions(rules: NurtureRules) -> dict[str, PropertyDefinition]:
    """The contact properties the worker writes on every recycled contact, by their YAML key."""
    markers = rules.markers

    def contact_property(name: str, label: str, type_: str, field_type: str) -> PropertyDefinition:
        return PropertyDefinition(
            object_type=ObjectType.CONTACT.value,
            name=name,
            label=label,
            type=type_,
            field_type=field_type,
            group_name=MARKER_GROUP,
        )

    definitions = {
        "recycled_at": contact_property(markers.recycled_at, "Recycled to marketing at", "datetime", "date"),
        "reason": contact_property(markers.reason, "Recycle reason", "string", "text"),
        "source_deal": contact_property(markers.source_deal, "Recycled from deal", "string", "text"),
    }
    # Asked for only by a portal whose YAML sets a follow-up date: others need not create it.
    if any(reason.follow_up_after_days for reason in rules.reasons):
        definitions["follow_up_on"] = contact_property(markers.follow_up_on, "Follow up on", "date", "date")
    return definitions


def setup_marker_properties(rules: NurtureRules, gateway: HubSpotGateway, *, dry_run: bool) -> list[str]:
    """Create the marker properties HubSpot lacks; one line per property saying what was done."""
    done: list[str] = []
    for definition in marker_definitions(rules).values():
        existing = _property_or_none(gateway, ObjectType.CONTACT, definition.name)
        if existing is not None:
            done.append(f"exists      {definition.name} ({existing.type})")
        elif dry_run:
            done.append(f"would create {definition.name} ({definition.type}) in group '{MARKER_GROUP}'")
        else:
            gateway.create_property(ObjectType.CONTACT, definition)
            done.append(f"created     {definition.name} ({definition.type}) in group '{MARKER_GROUP}'")
    return done


# ---------------------------------------------------------------------------------------------
# The commands
# ---------------------------------------------------------------------------------------------


def _settings(require: tuple[str, ...] = ()) -> Settings:
    try:
        return Settings.from_env(require=require)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from exc


def _load(file: Path | None) -> tuple[NurtureRules, Path]:
    """Rules from --file or HANDOFF_CONFIG; prints every problem and exits 1 when invalid."""
    path = file if file is not None else _settings().handoff_config
    try:
        return load_rules(path, named_by="--file" if file is not None else "HANDOFF_CONFIG"), path
    except NurtureConfigError as exc:
        click.echo(f"{path} has {len(exc.problems)} problem(s):", err=True)
        for problem in exc.problems:
            click.echo(f"  - {problem}", err=True)
        raise SystemExit(1) from None


def _gateway() -> HubSpotGateway:
    # Imported here: the SDK is heavy and only the remote commands need it.
    from handoff_worker.hubspot.gateway import build_gateway
    from handoff_worker.state import redis_client

    settings = _settings(require=("HUBSPOT_ACCESS_TOKEN",))
    gateway: HubSpotGateway = build_gateway(settings, redis_client(settings))
    return gateway


def _hubspot_failure(exc: HubSpotError) -> click.ClickException:
    return click.ClickException(
        f"could not ask HubSpot: {exc}. Check HUBSPOT_ACCESS_TOKEN and HUBSPOT_BASE_URL, then try again"
    )


@click.group("config")
def config_group() -> None:
    """Check the nurture YAML, locally or against HubSpot; create marker properties."""


FILE_OPTION = click.option(
    "--file",
    "file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="The nurture YAML to use (default: HANDOFF_CONFIG, config/nurture.yaml).",
)


@config_group.command("check")
@FILE_OPTION
@click.option(
    "--remote", is_flag=True, help="Also check reasons, workflows, lists and properties in HubSpot."
)
def check_command(file: Path | None, remote: bool) -> None:
    """Validate the nurture YAML. Exits 0 when valid, 1 listing every problem."""
    rules, path = _load(file)
    nurtures = sum(len(rule.nurtures) for rule in rules.reasons)
    click.echo(f"{path}: valid ({len(rules.reasons)} reasons, {nurtures} nurtures)")
    if not remote:
        return
    place = in_file(str(path), KeyLines(read_config_text(path)))
    try:
        problems, warnings = remote_check(rules, _gateway(), place)
    except HubSpotError as exc:
        raise _hubspot_failure(exc) from exc
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    if problems:
        click.echo(f"HubSpot disagrees with {path} in {len(problems)} place(s):", err=True)
        for problem in problems:
            click.echo(f"  - {problem}", err=True)
        raise SystemExit(1)
    click.echo("HubSpot: every reason, workflow, list and property was found and usable")


@config_group.command("setup-properties")
@FILE_OPTION
@click.option("--dry-run", is_flag=True, help="Only say what would be created.")
def setup_properties_command(file: Path | None, dry_run: bool) -> None:
    """Create the marker contact properties the worker writes, in the contact information property group."""
    rules, _ = _load(file)
    try:
        lines = setup_marker_properties(rules, _gateway(), dry_run=dry_run)
    except HubSpotError as exc:
        raise _hubspot_failure(exc) from exc
    for line in lines:
        click.echo(line)
