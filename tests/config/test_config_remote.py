"""`config check --remote` and `config setup-properties` against a live sandbox, over HTTP, through
the real SDK gateway."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from handoff_worker.cli import main
from handoff_worker.commands.config import remote_check, remote_problems
from handoff_worker.domain.models import ObjectType
from handoff_worker.errors import NotFoundError
from handoff_worker.hubspot.gateway import SdkGateway, build_gateway
from handoff_worker.nurture_config import load_rules, parse_rules
from handoff_worker.sandbox.state import load_default_seed
from handoff_worker.sandbox.testing import SandboxServer
from handoff_worker.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "config" / "nurture.yaml"
ALL_REASONS_TAIL = """\
  Can't Fulfill Their Needs: {recycle: false}
  Competitor: {recycle: false}
  Feature Missing: {recycle: false}
  Not Interested: {recycle: false}
  Not a Fit - Never Will Be: {recycle: false}
  Not a Fit - Might Be in the Future: {recycle: false}
  Not a Prospect: {recycle: false}
"""
MARKERS = (
    "handoff_recycled_at",
    "handoff_recycle_reason",
    "handoff_source_deal_id",
    "handoff_follow_up_date",
)


@pytest.fixture
def hubspot(sandbox: SandboxServer) -> SdkGateway:
    settings = Settings.from_env(
        {"HUBSPOT_ACCESS_TOKEN": "sandbox-token", "HUBSPOT_BASE_URL": sandbox.url}, dotenv_path=None
    )
    return build_gateway(settings)


@pytest.fixture
def cli_env(sandbox: SandboxServer, redis_url: str) -> dict[str, str]:
    return {
        "HUBSPOT_ACCESS_TOKEN": "sandbox-token",
        "HUBSPOT_BASE_URL": sandbox.url,
        "REDIS_URL": redis_url,
        "HANDOFF_CONFIG": str(SHIPPED),
    }


def invoke(args: list[str], env: dict[str, str]) -> Result:
    return CliRunner().invoke(main, args, env=env)


def seed_without_markers() -> dict[str, Any]:
    seed = copy.deepcopy(load_default_seed())
    seed["properties"]["contacts"] = [p for p in seed["properties"]["contacts"] if p["name"] not in MARKERS]
    return seed


# --- remote_problems over the gateway ---------------------------------------------------------


def test_shipped_file_matches_the_default_sandbox(hubspot: SdkGateway) -> None:
    assert remote_problems(load_rules(SHIPPED), hubspot) == []


def test_every_kind_of_disagreement_is_reported(hubspot: SdkGateway) -> None:
    rules = parse_rules(
        """\
version: 1
leads: {unqualified_value: DISQUALIFIED}
reasons:
  Pricing:
    nurture:
      - workflow: 5106
      - workflow: 5107
      - workflow: 999
      - list: 703
      - list: 799
      - property: {name: nurture_stream, value: pricing}
      - property: {name: hs_lead_status, value: LATER}
  Budget:
    recycle: false
  Not Ready:
    nurture:
      - workflow: 5106
""",
        "team.yaml",
    )
    assert remote_problems(rules, hubspot) == [
        "reasons > Budget: 'Budget' is not an option of 'closed_lost_reason' (deals > reason_property); "
        "fix the label or `value:` to match the picklist, or add the option in HubSpot",
        *[
            f"reasons: the option '{label}' of 'closed_lost_reason' has no entry; add '{label}:' under "
            "reasons (with recycle: false if it needs no nurture)"
            for label in UNMAPPED
        ],
        "reasons > Budget: 'Budget' is not an option of 'handoff_unqualified_reason' "
        "(leads > reason_property); fix the label or `value:` to match the picklist, or add the option "
        "in HubSpot",
        *[
            f"reasons: the option '{label}' of 'handoff_unqualified_reason' has no entry; add '{label}:' "
            "under reasons (with recycle: false if it needs no nurture)"
            for label in UNMAPPED
        ],
        "leads > unqualified_value: 'DISQUALIFIED' is not a value of 'hs_lead_status'; use one of: NEW, "
        "OPEN, IN_PROGRESS, OPEN_DEAL, UNQUALIFIED, ATTEMPTED_TO_CONTACT, CONNECTED, BAD_TIMING",
        "reasons > Pricing, Not Ready: workflow 5106 ('Nurture - Not Interested (paused)') is turned off; "
        "turn it on in HubSpot or pick another workflow",
        "reasons > Pricing: workflow 5107 ('Deal follow-up (deal-based)') is not contact-based; only "
        "contact workflows can enroll contacts: pick a contact workflow",
        "reasons > Pricing: workflow 999 does not exist in HubSpot; copy the id from the workflow's URL",
        "reasons > Pricing: list 703 ('Active MQLs') is an active list; contacts can only be added to a "
        "static list: pick or create a static one",
        "reasons > Pricing: list 799 does not exist in HubSpot; copy the id from the list's URL",
        "reasons > Pricing > nurture: HubSpot has no contact property 'nurture_stream'; create it or fix "
        "the name",
        "reasons > Pricing > nurture: 'LATER' is not a value of 'hs_lead_status'; use one of: NEW, OPEN, "
        "IN_PROGRESS, OPEN_DEAL, UNQUALIFIED, ATTEMPTED_TO_CONTACT, CONNECTED, BAD_TIMING",
    ]


UNMAPPED = [
    "Can't Fulfill Their Needs",
    "Competitor",
    "Feature Missing",
    "Not Interested",
    "Not a Fit - Never Will Be",
    "Not a Fit - Might Be in the Future",
    "Not a Prospect",
]


def test_flow_id_is_accepted_like_the_workflow_id(hubspot: SdkGateway) -> None:
    text = "version: 1\nreasons:\n  Pricing:\n    nurture:\n      - workflow: 1705102\n"
    rules = parse_rules(text + "  Not Ready: {recycle: false}\n" + ALL_REASONS_TAIL, "team.yaml")
    assert remote_problems(rules, hubspot) == []


@pytest.mark.parametrize("workflow_id", ["5103", "1705103"], ids=["legacy id", "flow id"])
def test_a_workflow_that_allows_re_enrollment_is_a_warning(hubspot: SdkGateway, workflow_id: str) -> None:
    text = f"version: 1\nreasons:\n  Not Ready:\n    nurture:\n      - workflow: {workflow_id}\n"
    rules = parse_rules(text + "  Pricing: {recycle: false}\n" + ALL_REASONS_TAIL, "team.yaml")
    assert remote_check(rules, hubspot) == (
        [],
        [
            f"reasons > Not Ready: workflow {workflow_id} ('Nurture - Not Ready') allows re-enrollment: "
            "a contact that comes back to sales and is lost again gets the whole nurture again; turn "
            "re-enrollment off in the workflow's enrollment settings unless that is wanted"
        ],
    )


def test_free_text_reason_property_and_disabled_leads_skip_option_checks(hubspot: SdkGateway) -> None:
    rules = parse_rules(
        "version: 1\ndeals: {reason_property: dealname}\nleads: {enabled: false}\n"
        "reasons:\n  Anything at all: {recycle: false}\n",
        "team.yaml",
    )
    assert remote_problems(rules, hubspot) == []


def test_missing_reason_and_marker_properties(sandbox: SandboxServer, hubspot: SdkGateway) -> None:
    sandbox.control.reset(seed_without_markers())
    rules = parse_rules(
        "version: 1\ndeals: {reason_property: lost_why}\nleads: {reason_property: unq_why}\n"
        "reasons:\n  Pricing: {recycle: false}\n",
        "team.yaml",
    )
    assert remote_problems(rules, hubspot) == [
        "deals > reason_property: HubSpot has no deal property 'lost_why'; write the internal name of the "
        "property that holds the lost reason",
        "leads > reason_property: HubSpot has no contact property 'unq_why'; write the internal name of "
        "the property that holds the lost reason",
        *[
            f"markers > {key}: HubSpot has no contact property '{name}'; run `handoff-worker config "
            "setup-properties` to create it"
            for key, name in zip(("recycled_at", "reason", "source_deal"), MARKERS[:3], strict=True)
        ],
    ]


def test_follow_up_date_property_is_asked_for_only_when_a_reason_sets_one(
    sandbox: SandboxServer, hubspot: SdkGateway
) -> None:
    sandbox.control.reset(seed_without_markers())
    without = parse_rules("version: 1\nreasons:\n  Pricing: {}\n", "team.yaml")
    assert not any("follow_up_on" in p for p in remote_problems(without, hubspot))
    with_follow_up = parse_rules("version: 1\nreasons:\n  Pricing: {follow_up_after_days: 90}\n", "team.yaml")
    assert (
        "markers > follow_up_on: HubSpot has no contact property 'handoff_follow_up_date'; run "
        "`handoff-worker config setup-properties` to create it"
    ) in remote_problems(with_follow_up, hubspot)


def test_follow_up_date_property_of_another_type_is_named(
    sandbox: SandboxServer, hubspot: SdkGateway
) -> None:
    seed = seed_without_markers()
    seed["properties"]["contacts"].append(
        {"name": "handoff_follow_up_date", "label": "Follow up", "type": "string", "fieldType": "text"}
    )
    sandbox.control.reset(seed)
    rules = parse_rules("version: 1\nreasons:\n  Pricing: {follow_up_after_days: 90}\n", "team.yaml")
    assert (
        "markers > follow_up_on: HubSpot's contact property 'handoff_follow_up_date' is a string, not a "
        "date; name a date property here, or delete it in HubSpot and run `handoff-worker config "
        "setup-properties`"
    ) in remote_problems(rules, hubspot)


# --- the commands -----------------------------------------------------------------------------


def test_check_remote_passes_on_the_shipped_file(cli_env: dict[str, str]) -> None:
    result = invoke(["config", "check", "--remote"], cli_env)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == (
        "HubSpot: every reason, workflow, list and property was found and usable"
    )


def test_check_remote_warns_without_failing(cli_env: dict[str, str]) -> None:
    # The shipped file's Not Ready nurture is the sandbox's re-enrollable workflow 5103.
    result = invoke(["config", "check", "--remote"], cli_env)
    assert result.exit_code == 0, result.output
    shipped_lines = SHIPPED.read_text().splitlines()
    at = 1 + next(n for n, text in enumerate(shipped_lines) if "workflow: 5103" in text)
    assert [line for line in result.stderr.splitlines() if line.startswith("warning:")] == [
        f"warning: {SHIPPED}:{at} reasons > Not Ready: workflow 5103 ('Nurture - Not Ready') allows "
        "re-enrollment: a "
        "contact that comes back to sales and is lost again gets the whole nurture again; turn "
        "re-enrollment off in the workflow's enrollment settings unless that is wanted"
    ]


def test_check_remote_lists_problems_and_exits_1(tmp_path: Path, cli_env: dict[str, str]) -> None:
    path = tmp_path / "team.yaml"
    path.write_text(
        "version: 1\nreasons:\n  Pricing:\n    nurture:\n      - list: 703\n"
        "  Not Ready: {recycle: false}\n" + ALL_REASONS_TAIL
    )
    result = invoke(["config", "check", "--remote", "--file", str(path)], cli_env)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"HubSpot disagrees with {path} in 1 place(s):",
        f"  - {path}:5 reasons > Pricing: list 703 ('Active MQLs') is an active list; contacts can only "
        "be added "
        "to a static list: pick or create a static one",
    ]


def test_check_remote_puts_each_problem_at_the_line_of_its_key(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    path = tmp_path / "team.yaml"
    path.write_text(
        "version: 1\n"
        "markers:\n"
        "  reason: handoff_no_such_reason\n"
        "leads:\n"
        "  status_property: hs_lead_status\n"
        "  unqualified_value: DISQUALIFIED\n"
        "reasons:\n"
        "  Pricing:\n"
        "    nurture:\n"
        "      - workflow: 5106\n"
        "      - workflow: 999\n"
        "      - list: 799\n"
        "      - property: {name: nurture_stream, value: pricing}\n"
        "  budget:\n"
        "    recycle: false\n"
        "  Not Ready:\n"
        "    nurture:\n"
        "      - workflow: 5106\n" + ALL_REASONS_TAIL
    )
    result = invoke(["config", "check", "--remote", "--file", str(path)], cli_env)
    assert result.exit_code == 1, result.output
    problems = [line.removeprefix("  - ") for line in result.stderr.splitlines() if line.startswith("  - ")]
    assert [problem.split(" ", 1)[0] for problem in problems] == [
        f"{path}:14",  # budget: not an option of the deal reason property
        f"{path}:14",  # ... nor of the lead reason property
        f"{path}:6",  # leads > unqualified_value
        f"{path}:10",  # workflow 5106 (turned off), at its first use
        f"{path}:11",  # workflow 999
        f"{path}:12",  # list 799
        f"{path}:13",  # property nurture_stream
        f"{path}:3",  # markers > reason
    ], problems


def test_check_remote_needs_the_access_token(cli_env: dict[str, str]) -> None:
    result = invoke(["config", "check", "--remote"], {**cli_env, "HUBSPOT_ACCESS_TOKEN": ""})
    assert result.exit_code == 1
    assert "HUBSPOT_ACCESS_TOKEN is not set" in result.stderr


def test_check_remote_reports_a_refused_token(sandbox: SandboxServer, cli_env: dict[str, str]) -> None:
    sandbox.control.configure(access_token="the-right-token")
    result = invoke(["config", "check", "--remote"], cli_env)
    assert result.exit_code == 1
    assert "could not ask HubSpot" in result.stderr
    assert "Check HUBSPOT_ACCESS_TOKEN and HUBSPOT_BASE_URL" in result.stderr
    assert "sandbox-token" not in result.output


def test_setup_properties_dry_run_creates_nothing(
    sandbox: SandboxServer, hubspot: SdkGateway, cli_env: dict[str, str]
) -> None:
    sandbox.control.reset(seed_without_markers())
    result = invoke(["config", "setup-properties", "--dry-run"], cli_env)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "would create handoff_recycled_at (datetime) in group 'contactinformation'",
        "would create handoff_recycle_reason (string) in group 'contactinformation'",
        "would create handoff_source_deal_id (string) in group 'contactinformation'",
        "would create handoff_follow_up_date (date) in group 'contactinformation'",
    ]
    for name in MARKERS:
        with pytest.raises(NotFoundError):
            hubspot.get_property(ObjectType.CONTACT, name)


def test_setup_properties_creates_missing_markers_once(
    sandbox: SandboxServer, hubspot: SdkGateway, cli_env: dict[str, str]
) -> None:
    seed = seed_without_markers()
    seed["properties"]["contacts"].append(
        {"name": "handoff_recycle_reason", "label": "Why", "type": "string", "fieldType": "text"}
    )
    sandbox.control.reset(seed)
    result = invoke(["config", "setup-properties"], cli_env)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "created     handoff_recycled_at (datetime) in group 'contactinformation'",
        "exists      handoff_recycle_reason (string)",
        "created     handoff_source_deal_id (string) in group 'contactinformation'",
        "created     handoff_follow_up_date (date) in group 'contactinformation'",
    ]
    follow_up = hubspot.get_property(ObjectType.CONTACT, "handoff_follow_up_date")
    assert (follow_up.type, follow_up.field_type) == ("date", "date")
    recycled_at = hubspot.get_property(ObjectType.CONTACT, "handoff_recycled_at")
    assert (recycled_at.type, recycled_at.field_type, recycled_at.group_name) == (
        "datetime",
        "date",
        "contactinformation",
    )
    source_deal = hubspot.get_property(ObjectType.CONTACT, "handoff_source_deal_id")
    assert (source_deal.type, source_deal.field_type) == ("string", "text")

    again = invoke(["config", "setup-properties"], cli_env)
    assert again.exit_code == 0
    assert all(line.startswith("exists") for line in again.stdout.splitlines())
    assert remote_problems(load_rules(SHIPPED), hubspot) == []
