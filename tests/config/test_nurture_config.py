"""The nurture YAML loader: the shipped file, and every kind of mistake a marketer can make."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from handoff_worker.domain.nurture import NurtureMethod, NurtureRules
from handoff_worker.errors import NurtureConfigError
from handoff_worker.nurture_config import load_rules

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "config" / "nurture.yaml"

MINIMAL = "version: 1\nreasons:\n  Pricing:\n    nurture:\n      - workflow: 12345\n"


def write(tmp_path: Path, text: str, name: str = "nurture.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(NurtureConfigError) as caught:
        load_rules(path)
    assert caught.value.path == str(path)
    return caught.value.problems


# --- the shipped file -------------------------------------------------------------------------


def test_shipped_file_has_the_nine_usual_reasons() -> None:
    rules = load_rules(SHIPPED)
    assert [r.label for r in rules.reasons] == [
        "Can't Fulfill Their Needs",
        "Competitor",
        "Feature Missing",
        "Not Interested",
        "Not a Fit - Never Will Be",
        "Not a Fit - Might Be in the Future",
        "Not Ready",
        "Not a Prospect",
        "Pricing",
    ]


def test_shipped_file_leaves_out_reasons_that_must_not_be_nurtured() -> None:
    rules = load_rules(SHIPPED)
    never = rules.reason_for("Not a Fit - Never Will Be")
    assert never is not None and not never.recycle and never.nurtures == ()
    assert never.lifecycle_stage == "other"
    for label in ("Competitor", "Not a Prospect"):
        rule = rules.reason_for(label)
        assert rule is not None and not rule.recycle and rule.nurtures == ()
        assert rule.lifecycle_stage is None


def test_shipped_file_uses_every_nurture_method_and_recycles_to_lead() -> None:
    rules = load_rules(SHIPPED)
    methods = {n.method for r in rules.reasons for n in r.nurtures}
    assert methods == set(NurtureMethod)
    recycled = [r for r in rules.reasons if r.recycle]
    assert len(recycled) == 6
    assert all(r.nurtures and r.lifecycle_stage == "lead" for r in recycled)


def test_shipped_file_reasons_match_their_label_loosely() -> None:
    rules = load_rules(SHIPPED)
    # The usual picklist stores each option's label as its value too.
    assert all(rule.value == rule.label for rule in rules.reasons)
    exact = rules.reason_for("Not a Fit - Might Be in the Future")
    loose = rules.reason_for("  not a fit - might be in the FUTURE ")
    assert exact is not None and exact is loose
    assert rules.reason_for("Budget") is None


def test_shipped_file_settings_sections() -> None:
    rules = load_rules(SHIPPED)
    assert rules.deals.reason_property == "closed_lost_reason"
    assert rules.leads.enabled and rules.leads.unqualified_value == "UNQUALIFIED"
    assert rules.markers.recycled_at == "handoff_recycled_at"
    assert rules.owner_tasks.sla_hours == 24.0
    assert rules.owner_tasks.escalation_owner_id is None
    assert rules.recycling.customer_lifecycle_stages == {"customer", "evangelist"}


# --- what a valid file turns into -------------------------------------------------------------


def test_minimal_file_takes_defaults(tmp_path: Path) -> None:
    rules = load_rules(write(tmp_path, MINIMAL))
    assert rules == NurtureRules(reasons=rules.reasons)
    (pricing,) = rules.reasons
    assert (pricing.label, pricing.value, pricing.recycle, pricing.lifecycle_stage) == (
        "Pricing",
        "Pricing",
        True,
        "lead",
    )
    assert pricing.nurtures[0].workflow_id == "12345"
    assert pricing.nurtures[0].key == "workflow:12345"
    assert pricing.nurtures[0].name == "Pricing (workflow 12345)"


def test_every_key_is_read(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        version: 1
        custom_lifecycle_stages: [partner]
        deals:
          reason_property: lost_reason_dropdown
          stages:
            extra_lost: {default: [lost_quietly, 12345678]}
            excluded: {sales_pipe: [closedlost]}
        leads: {enabled: false, status_property: lead_state, unqualified_value: BAD, reason_property: why}
        markers: {recycled_at: m_at, reason: m_reason, source_deal: m_deal}
        owner_tasks:
          sla_hours: 4.5
          subject: "Reason for {deal_name}?"
          escalate_to_owner: "987"
          escalation_subject: "Still nothing on {deal_name}"
        recycling:
          lifecycle_stage: subscriber
          skip_contacts_with_open_deals: false
          protect_customers: false
          customer_lifecycle_stages: [customer, partner]
        reasons:
          Pricing:
            value: price
            lifecycle_stage: partner
            nurture:
              - list: "678"
                name: Price list
              - property: {name: track, value: 2024}
          Other:
        """,
    )
    rules = load_rules(path)
    assert rules.deals.reason_property == "lost_reason_dropdown"
    assert rules.deals.extra_lost_stage_ids == {"default": {"lost_quietly", "12345678"}}
    assert rules.deals.excluded_stage_ids == {"sales_pipe": {"closedlost"}}
    assert (rules.leads.enabled, rules.leads.status_property, rules.leads.unqualified_value) == (
        False,
        "lead_state",
        "BAD",
    )
    assert rules.leads.reason_property == "why"
    assert (rules.markers.recycled_at, rules.markers.reason, rules.markers.source_deal) == (
        "m_at",
        "m_reason",
        "m_deal",
    )
    assert rules.owner_tasks.sla_hours == 4.5
    assert rules.owner_tasks.escalation_owner_id == "987"
    assert rules.owner_tasks.subject == "Reason for {deal_name}?"
    assert rules.recycling.default_lifecycle_stage == "subscriber"
    assert not rules.recycling.skip_contacts_with_open_deals and not rules.recycling.protect_customers
    assert rules.recycling.customer_lifecycle_stages == {"customer", "partner"}
    pricing, other = rules.reasons
    assert pricing.value == "price" and pricing.lifecycle_stage == "partner"
    assert [n.key for n in pricing.nurtures] == ["list:678", "property:track=2024"]
    assert pricing.nurtures[0].name == "Price list"
    # A reason with nothing under it is recycled to the default stage with no nurture.
    assert (other.recycle, other.lifecycle_stage, other.nurtures) == (True, "subscriber", ())


# --- broken files: each gives its exact problem -----------------------------------------------

BROKEN = [
    pytest.param(
        MINIMAL.replace("nurture:", "nuture:"),
        "4 reasons > Pricing > nuture: unknown key 'nuture'; did you mean 'nurture'? "
        "Allowed here: value, recycle, lifecycle_stage, nurture, follow_up_after_days, tell_marketing",
        id="unknown-key-with-suggestion",
    ),
    pytest.param(
        MINIMAL + "colour: blue\n",
        "6 colour: unknown key 'colour'; Allowed here: version, custom_lifecycle_stages, deals, leads, "
        "markers, owner_tasks, recycling, came_back, marketing_notices, reasons",
        id="unknown-key-without-suggestion",
    ),
    pytest.param(
        MINIMAL.replace("12345", "abc"),
        "5 reasons > Pricing > nurture[0] > workflow: 'abc' is not a workflow id; write the numeric id "
        "from the workflow's URL, e.g. workflow: 12345",
        id="workflow-id-not-numeric",
    ),
    pytest.param(
        MINIMAL.replace("workflow: 12345", "list: 6.5"),
        "5 reasons > Pricing > nurture[0] > list: the number 6.5 is not a list id; write the numeric id "
        "from the list's URL (ILS list id), e.g. list: 678",
        id="list-id-not-whole",
    ),
    pytest.param(
        MINIMAL.replace("workflow: 12345", "workflow:"),
        "5 reasons > Pricing > nurture[0] > workflow: the workflow id is missing; write e.g. workflow: 12345",
        id="method-without-id",
    ),
    pytest.param(
        MINIMAL + "        list: 9\n",
        "5 reasons > Pricing > nurture[0]: this nurture has workflow and list; give exactly one of "
        "workflow: <id>, list: <id> or property: {name: ..., value: ...} per entry "
        "(start another '- ' line for a second one)",
        id="two-methods-in-one-entry",
    ),
    pytest.param(
        MINIMAL.replace("workflow: 12345", "name: Just a name"),
        "5 reasons > Pricing > nurture[0]: this nurture names no method; give exactly one of "
        "workflow: <id>, list: <id> or property: {name: ..., value: ...} per entry "
        "(start another '- ' line for a second one)",
        id="no-method",
    ),
    pytest.param(
        MINIMAL.replace("workflow: 12345", "property: {name: track}"),
        "5 reasons > Pricing > nurture[0] > property: value missing; write e.g. "
        "property: {name: nurture_track, value: pricing}",
        id="property-without-value",
    ),
    pytest.param(
        MINIMAL.replace("    nurture:", "    recycle: false\n    nurture:"),
        "5 reasons > Pricing > nurture: 'Pricing' has recycle: false, so its contacts are never "
        "nurtured; remove the nurture list or set recycle: true",
        id="no-recycle-with-nurture",
    ),
    pytest.param(
        MINIMAL.replace("    nurture:", "    recycle: no\n    nurture:"),
        "4 reasons > Pricing > recycle: 'no' is not yes/no; write true or false "
        "(yes/no/on/off are read as text here)",
        id="yes-no-as-text",
    ),
    pytest.param(
        MINIMAL.replace("    nurture:", "    lifecycle_stage: Lead\n    nurture:"),
        "4 reasons > Pricing > lifecycle_stage: 'Lead' is not a lifecycle stage; use one of HubSpot's "
        "internal values (subscriber, lead, marketingqualifiedlead, salesqualifiedlead, opportunity, "
        "customer, evangelist, other) or add a custom stage's internal value to `custom_lifecycle_stages:`",
        id="bad-lifecycle-stage",
    ),
    pytest.param(
        MINIMAL + "  pricing :\n    recycle: false\n",
        "6 reasons > pricing: 'pricing' is the same reason as 'Pricing' on line 3 (reasons match on "
        "label or value, ignoring case and spaces); keep one entry",
        id="duplicate-reason-after-folding",
    ),
    pytest.param(
        MINIMAL + "  Cost:\n    value: ' PRICING'\n    recycle: false\n",
        "6 reasons > Cost: 'Cost' is the same reason as 'Pricing' on line 3 (reasons match on "
        "label or value, ignoring case and spaces); keep one entry",
        id="value-same-as-another-label",
    ),
    pytest.param(
        MINIMAL + "  Pricing:\n    recycle: false\n",
        "6 reasons > Pricing: 'Pricing' appears twice (first on line 3); YAML keeps only one of them: "
        "merge the two entries into one",
        id="duplicate-yaml-key",
    ),
    pytest.param(
        MINIMAL.replace("version: 1", "version: 2"),
        "1 version: the number 2 is not a supported version; write version: 1",
        id="unsupported-version",
    ),
    pytest.param(
        MINIMAL + "deals:\n  reason_property: Closed Lost Reason\n",
        "7 deals > reason_property: 'Closed Lost Reason' is not a HubSpot property's internal name; write "
        "the internal name (letters, digits and underscores, shown in HubSpot's property settings), "
        "e.g. closed_lost_reason",
        id="property-label-instead-of-name",
    ),
    pytest.param(
        MINIMAL + "owner_tasks:\n  subject: 'Fix {deal}'\n",
        "7 owner_tasks > subject: 'Fix {deal}' uses deal; the only placeholder allowed is {deal_name} "
        "(write {{ or }} for a literal brace)",
        id="unknown-placeholder",
    ),
    pytest.param(
        MINIMAL + "owner_tasks:\n  sla_hours: '24h'\n",
        "7 owner_tasks > sla_hours: '24h' is not a number of hours; write e.g. sla_hours: 24",
        id="sla-not-a-number",
    ),
    pytest.param(
        MINIMAL + "owner_tasks:\n  escalate_to_owner: jane@example.com\n",
        "7 owner_tasks > escalate_to_owner: 'jane@example.com' is not a HubSpot owner id; write the "
        "owner's numeric id (Settings > Users & Teams), e.g. escalate_to_owner: 12345678",
        id="owner-email-instead-of-id",
    ),
    pytest.param(
        MINIMAL + "leads: [enabled]\n",
        "6 leads: a list is not a section; indent keys under it, e.g. leads:\n  enabled: ...",
        id="list-instead-of-section",
    ),
    pytest.param(
        MINIMAL.replace("      - workflow: 12345", "        workflow: 12345"),
        "4 reasons > Pricing > nurture: a section of keys is not a list; write one item per line after "
        "'- ', e.g. \n  - workflow: 12345",
        id="nurture-not-a-list",
    ),
    *[
        pytest.param(
            f"version: 1\nreasons:\n  Pricing:\n    follow_up_after_days: {days}\n",
            f"4 reasons > Pricing > follow_up_after_days: {shown} is not a number of days; write a whole "
            "number from 1 to 3650 (ten years), e.g. follow_up_after_days: 90, or remove the line for no "
            "follow-up date",
            id=f"follow-up-{days}",
        )
        for days, shown in (
            ("0", "the number 0"),
            ("-5", "the number -5"),
            ("3651", "the number 3651"),
            ("2.5", "the number 2.5"),
            ("ninety", "'ninety'"),
            ("true", "yes/no (true)"),
        )
    ],
    pytest.param(
        "version: 1\nreasons:\n  Competitor:\n    recycle: false\n    follow_up_after_days: 30\n",
        "5 reasons > Competitor > follow_up_after_days: 'Competitor' has recycle: false, so its contacts "
        "get no follow-up date (it is written with the recycling markers); remove follow_up_after_days "
        "or set recycle: true",
        id="follow-up-without-recycling",
    ),
    pytest.param(
        "version: 1\nreasons:\n  Pricing:\n    tell_marketing:\n      message: true\n",
        "5 reasons > Pricing > tell_marketing > message: 'Pricing' asks for a message, but "
        "marketing_notices has no webhook_url_env and hub_id; add them under marketing_notices: (e.g. "
        "webhook_url_env: MARKETING_WEBHOOK_URL, hub_id: 1234567) or set message: false",
        id="message-without-webhook",
    ),
    pytest.param(
        "version: 1\nmarketing_notices:\n  webhook_url_env: https://hooks.slack.com/services/x\n"
        "reasons:\n  Pricing: {}\n",
        "3 marketing_notices > webhook_url_env: 'https://hooks.slack.com/services/x' is not the name of an "
        "environment variable; write the variable's NAME (the URL itself is a secret and stays out of "
        "this file), e.g. webhook_url_env: MARKETING_WEBHOOK_URL",
        id="webhook-url-in-the-file",
    ),
    pytest.param(
        "version: 1\nreasons:\n  Pricing:\n    tell_marketing: {}\n",
        "4 reasons > Pricing > tell_marketing: 'Pricing' has tell_marketing without task_owner or "
        "message; add task_owner: <owner id> and/or message: true, or remove tell_marketing",
        id="tell-marketing-empty",
    ),
    pytest.param(
        "version: 1\n",
        "1 (top of the file): the `reasons:` section is missing; list the lost reasons under it",
        id="no-reasons",
    ),
    pytest.param(
        "version: 1\nreasons: {}\n",
        "2 reasons: no reasons are listed; add each lost reason of the picklist under `reasons:`",
        id="empty-reasons",
    ),
    pytest.param(
        "- version: 1\n",
        "1 (top of the file): the file must be a set of `key: value` lines (version, reasons, ...), "
        "not a list",
        id="top-level-list",
    ),
]


@pytest.mark.parametrize(("text", "expected"), BROKEN)
def test_broken_file_reports_its_exact_problem(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    assert problems_of(path) == [f"{path}:{expected}"]


def test_yaml_syntax_error_gives_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\nreasons:\n  Pricing: {nurture: [workflow: 1\n")
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}: YAML syntax error at line 4, column 1: ")
    assert "Check indentation" in problem


def test_tab_indentation_names_the_line_and_the_tab(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\nreasons:\n\tPricing:\n")
    (problem,) = problems_of(path)
    assert problem == (
        f"{path}:3 this line is indented with a tab; the nurture file is indented with spaces only: "
        "replace the tab with spaces so 'Pricing' lines up with the keys of its section"
    )


REASON_HEAD = "version: 1\nreasons:\n  Pricing:\n    recycle: true\n"
NURTURE_TAIL = "      - workflow: 12345\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            REASON_HEAD + "   nurture:\n" + NURTURE_TAIL,
            "5 this line is indented differently from the lines around it (column 4; line 4 starts "
            "at column 5); the keys of one section must line up in the same column: indent "
            "'nurture' and the keys beside it alike",
            id="one-space-less",
        ),
        pytest.param(
            REASON_HEAD + "     nurture:\n" + NURTURE_TAIL,
            "5 this line is indented further than the line above it (column 6, not 5), so YAML "
            "reads it as the rest of that line's value; keys of one section must line up: move "
            "'nurture' left to column 5",
            id="one-space-more",
        ),
        pytest.param(
            REASON_HEAD + "\tnurture:\n" + NURTURE_TAIL,
            "5 this line is indented with a tab; the nurture file is indented with spaces only: "
            "replace the tab with spaces so 'nurture' lines up with the keys of its section",
            id="tab",
        ),
        pytest.param(
            "version: 1\nreasons:\n  Pricing:\n      recycle: true\n    # why\n\n    nurture:\n"
            + NURTURE_TAIL,
            "7 this line is indented differently from the lines around it (column 5; line 4 starts "
            "at column 7); the keys of one section must line up in the same column: indent "
            "'nurture' and the keys beside it alike",
            id="key-above-indented-further",
        ),
    ],
)
def test_a_wrongly_indented_key_is_explained_in_words(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    assert problems_of(path) == [f"{path}:{expected}"]


def test_a_colon_inside_a_value_stays_a_syntax_error(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\nreasons:\n  Pricing:\n    note: see: here\n")
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}: YAML syntax error at line 4, column 14: ")


@pytest.mark.parametrize("text", ["", "   \n\n", "# only a note\n# another\n"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    assert problems_of(path) == [
        f"{path}: the file is empty: it needs at least `version: 1` and a `reasons:` section "
        "(see docs/nurture-config.md)"
    ]


def test_missing_file_names_the_setting(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    assert problems_of(missing) == [
        f"HANDOFF_CONFIG points to {missing} which does not exist: set HANDOFF_CONFIG to the nurture "
        "YAML's path (the project ships config/nurture.yaml to start from)"
    ]


def test_missing_file_names_the_option_it_came_from(tmp_path: Path) -> None:
    with pytest.raises(NurtureConfigError) as caught:
        load_rules(tmp_path, named_by="--file")
    assert caught.value.problems == [
        f"--file points to {tmp_path} is a folder, not a file: set --file to the nurture YAML's path "
        "(the project ships config/nurture.yaml to start from)"
    ]


def test_every_problem_is_reported_at_once_in_file_order(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        version: 1
        deals:
          reason_propety: closed_lost_reason
        reasons:
          Pricing:
            nurture:
              - workflow: abc
              - list: 1
                workflow: 2
          Competitor:
            recycle: false
            nurture:
              - list: 5
          Competitor:
            recycle: false
        recycling:
          lifecycle_stage: leed
        """,
    )
    problems = problems_of(path)
    lines = [int(p.removeprefix(f"{path}:").split(" ", 1)[0]) for p in problems]
    assert lines == [3, 7, 8, 12, 14, 17]
    assert "did you mean 'reason_property'" in problems[0]
    assert "'abc' is not a workflow id" in problems[1]
    assert "has workflow and list" in problems[2]
    assert "recycle: false" in problems[3]
    assert "appears twice (first on line 10)" in problems[4]
    assert "'leed' is not a lifecycle stage" in problems[5]
    error_text = str(NurtureConfigError(str(path), problems))
    assert error_text.startswith(f"{path}: 6 problem(s) in the nurture config:")


def test_custom_lifecycle_stage_needs_declaring(tmp_path: Path) -> None:
    text = MINIMAL.replace("    nurture:", "    lifecycle_stage: partner\n    nurture:")
    assert "'partner' is not a lifecycle stage" in problems_of(write(tmp_path, text))[0]
    rules = load_rules(write(tmp_path, text + "custom_lifecycle_stages: [partner]\n"))
    assert rules.reasons[0].lifecycle_stage == "partner"


def test_numeric_ids_may_be_quoted_and_labels_are_trimmed(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\nreasons:\n  '  Not   Ready ':\n    nurture:\n      - list: '042'\n")
    rules = load_rules(path)
    (rule,) = rules.reasons
    assert rule.label == "Not   Ready"
    assert rule.nurtures[0].list_id == "042"
    assert rules.reason_for("not ready") is rule


# --- another loss while a contact is in a nurture ---------------------------------------------


@pytest.mark.parametrize(("written", "policy"), [("", "keep"), ("keep", "keep"), ("Switch", "switch")])
def test_second_loss_policy_defaults_to_keep(tmp_path: Path, written: str, policy: str) -> None:
    setting = f"recycling:\n  second_loss: {written}\n" if written else ""
    rules = load_rules(write(tmp_path, setting + MINIMAL))
    assert rules.recycling.second_loss.value == policy


def test_second_loss_policy_names_its_choices(tmp_path: Path) -> None:
    (problem,) = problems_of(write(tmp_path, "recycling:\n  second_loss: replace\n" + MINIMAL))
    assert "recycling > second_loss" in problem and "keep, switch" in problem


def test_follow_up_after_days_is_read_per_reason(tmp_path: Path) -> None:
    text = (
        "version: 1\nmarkers: {follow_up_on: sales_follow_up}\nreasons:\n"
        "  Not Ready: {follow_up_after_days: 90}\n  Pricing: {follow_up_after_days: }\n  Competitor: {}\n"
    )
    rules = load_rules(write(tmp_path, text))
    assert rules.markers.follow_up_on == "sales_follow_up"
    days = {reason.label: reason.follow_up_after_days for reason in rules.reasons}
    assert days == {"Not Ready": 90, "Pricing": None, "Competitor": None}


def test_tell_marketing_is_read_per_reason(tmp_path: Path) -> None:
    text = (
        "version: 1\nmarketing_notices:\n  hub_id: 1234567\n  webhook_url_env: TEAM_HOOK\n"
        "  daily_digest: true\nreasons:\n"
        "  Pricing:\n    tell_marketing: {task_owner: 555, message: true}\n  Competitor: {recycle: false}\n"
    )
    rules = load_rules(write(tmp_path, text))
    assert (rules.marketing_notices.hub_id, rules.marketing_notices.webhook_url_env) == (
        "1234567",
        "TEAM_HOOK",
    )
    assert rules.marketing_notices.daily_digest is True
    tells = {reason.label: reason.tell_marketing for reason in rules.reasons}
    assert tells["Competitor"] is None
    assert tells["Pricing"] is not None
    assert (tells["Pricing"].task_owner_id, tells["Pricing"].message) == ("555", True)
