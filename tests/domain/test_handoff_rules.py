"""The handoff's pure rules, table by table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from handoff_worker.domain.journey import Episode, Journey, JourneyState
from handoff_worker.domain.models import CrmObject, Pipeline, Stage
from handoff_worker.domain.nurture import (
    DealRules,
    LeadRules,
    Nurture,
    NurtureMethod,
    NurtureRules,
    ReasonRule,
    RecyclingRules,
)
from handoff_worker.domain.rules import (
    DealStatus,
    HandoffPlan,
    LifecycleWrite,
    SkipReason,
    build_plan,
    contact_eligibility,
    is_unqualified,
    lifecycle_writes,
    lost_stage_ids,
    needs_escalation,
    other_deals_matter,
    owner_task_due,
    settled_unread,
    stage_catalog,
    target_lifecycle,
)

NOW = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)

SALES = Pipeline(
    "default",
    "Sales",
    (
        Stage("appointmentscheduled", "Appointment", False, 0.2),
        Stage("closedwon", "Closed won", True, 1.0),
        Stage("closedlost", "Closed lost", True, 0.0),
    ),
)
# A stage labelled "lost" that HubSpot does not treat as lost, and a lost one with an odd label.
PARTNERS = Pipeline(
    "partners",
    "Partners",
    (
        Stage("p_open", "Talking", False, 0.5),
        Stage("p_fake_lost", "Closed lost (pending)", True, 0.8),
        Stage("p_gone", "Went quiet", True, 0.0),
        Stage("p_parked", "Parked", False, 0.1),
    ),
)
PIPELINES = (SALES, PARTNERS)

WORKFLOW = Nurture(NurtureMethod.WORKFLOW, "Pricing nurture", workflow_id="1003")
LIST = Nurture(NurtureMethod.LIST, "Newsletter", list_id="2001")
PROPERTY = Nurture(NurtureMethod.PROPERTY, "Track", property_name="nurture_track", property_value="feature")
PRICING = ReasonRule("Pricing", "pricing", True, None, (WORKFLOW,))
FEATURE = ReasonRule("Feature Missing", "feature_missing", True, None, (WORKFLOW, PROPERTY, LIST))
NEWSLETTER = ReasonRule("Not Interested", "not_interested", True, None, (LIST,))
NEVER = ReasonRule("Not a Fit", "not_a_fit_never", False, "other")
COMPETITOR = ReasonRule("Competitor", "competitor", False, None)
RULES = NurtureRules(reasons=(PRICING, FEATURE, NEWSLETTER, NEVER, COMPETITOR))
CATALOG = stage_catalog(PIPELINES, RULES.deals)


def deal(deal_id: str, pipeline: str, stage: str) -> CrmObject:
    return CrmObject(deal_id, {"pipeline": pipeline, "dealstage": stage})


def contact(
    contact_id: str, stage: str | None = "salesqualifiedlead", email: str | None = "a@example.com"
) -> CrmObject:
    return CrmObject(contact_id, {"lifecyclestage": stage, "email": email})


@pytest.mark.parametrize(
    ("deal_rules", "expected"),
    [
        (DealRules(), {"default": {"closedlost"}, "partners": {"p_gone"}}),
        (
            DealRules(extra_lost_stage_ids={"partners": frozenset({"p_parked"})}),
            {"default": {"closedlost"}, "partners": {"p_gone", "p_parked"}},
        ),
        (
            DealRules(excluded_stage_ids={"default": frozenset({"closedlost"})}),
            {"default": set(), "partners": {"p_gone"}},
        ),
    ],
    ids=["metadata-only", "extra-stage", "excluded-stage"],
)
def test_lost_stage_ids_use_metadata_and_yaml_never_labels(
    deal_rules: DealRules, expected: dict[str, set[str]]
) -> None:
    assert lost_stage_ids(PIPELINES, deal_rules) == {k: frozenset(v) for k, v in expected.items()}


@pytest.mark.parametrize(
    ("pipeline", "stage", "expected"),
    [
        ("default", "appointmentscheduled", DealStatus.OPEN),
        ("default", "closedwon", DealStatus.WON),
        ("default", "closedlost", DealStatus.LOST),
        ("partners", "p_fake_lost", DealStatus.WON),
        ("partners", "nope", DealStatus.UNKNOWN),
    ],
)
def test_stage_catalog_status(pipeline: str, stage: str, expected: DealStatus) -> None:
    assert CATALOG.status(pipeline, stage) is expected


def test_excluded_closed_lost_stage_is_neither_lost_nor_won() -> None:
    catalog = stage_catalog(PIPELINES, DealRules(excluded_stage_ids={"default": frozenset({"closedlost"})}))
    assert catalog.status("default", "closedlost") is DealStatus.CLOSED_OTHER


@pytest.mark.parametrize(
    ("properties", "rules", "expected"),
    [
        ({"hs_lead_status": "UNQUALIFIED"}, LeadRules(), True),
        ({"hs_lead_status": " unqualified "}, LeadRules(), True),
        ({"hs_lead_status": "OPEN"}, LeadRules(), False),
        ({"hs_lead_status": None}, LeadRules(), False),
        ({}, LeadRules(), False),
        ({"hs_lead_status": "UNQUALIFIED"}, LeadRules(enabled=False), False),
        ({"lead_state": "dq"}, LeadRules(status_property="lead_state", unqualified_value="DQ"), True),
    ],
)
def test_is_unqualified(properties: dict[str, str | None], rules: LeadRules, expected: bool) -> None:
    assert is_unqualified(properties, rules) is expected


CASES_ELIGIBILITY = [
    ("plain", contact("c"), [deal("d1", "default", "closedlost")], RULES, False, False, None),
    ("own-deal-ignored", contact("c"), [deal("d1", "default", "closedlost")], RULES, True, False, None),
    (
        "other-open",
        contact("c"),
        [deal("d2", "default", "appointmentscheduled")],
        RULES,
        False,
        False,
        SkipReason.OPEN_DEAL,
    ),
    ("other-lost", contact("c"), [deal("d2", "partners", "p_gone")], RULES, False, False, None),
    (
        "other-won",
        contact("c"),
        [deal("d2", "default", "closedwon")],
        RULES,
        False,
        False,
        SkipReason.CUSTOMER,
    ),
    (
        "label-lost-is-won",
        contact("c"),
        [deal("d2", "partners", "p_fake_lost")],
        RULES,
        False,
        False,
        SkipReason.CUSTOMER,
    ),
    (
        "other-unknown-stage",
        contact("c"),
        [deal("d2", "default", "???")],
        RULES,
        False,
        False,
        SkipReason.OPEN_DEAL,
    ),
    ("lifecycle-customer", contact("c", "customer"), [], RULES, False, False, SkipReason.CUSTOMER),
    ("lifecycle-evangelist", contact("c", "evangelist"), [], RULES, False, False, SkipReason.CUSTOMER),
    ("already", contact("c"), [], RULES, False, True, SkipReason.ALREADY_RECYCLED),
    ("no-email-needed", contact("c", email=None), [], RULES, True, False, SkipReason.NO_EMAIL),
    ("no-email-fine", contact("c", email=""), [], RULES, False, False, None),
    (
        "customers-not-protected",
        contact("c", "customer"),
        [deal("d2", "default", "closedwon")],
        NurtureRules(reasons=(), recycling=RecyclingRules(protect_customers=False)),
        False,
        False,
        None,
    ),
    (
        "open-deals-allowed",
        contact("c"),
        [deal("d2", "default", "appointmentscheduled")],
        NurtureRules(reasons=(), recycling=RecyclingRules(skip_contacts_with_open_deals=False)),
        False,
        False,
        None,
    ),
]


@pytest.mark.parametrize(
    ("person", "deals", "rules", "needs_email", "already", "expected"),
    [case[1:] for case in CASES_ELIGIBILITY],
    ids=[case[0] for case in CASES_ELIGIBILITY],
)
def test_contact_eligibility(
    person: CrmObject,
    deals: list[CrmObject],
    rules: NurtureRules,
    needs_email: bool,
    already: bool,
    expected: SkipReason | None,
) -> None:
    verdict = contact_eligibility(
        person,
        deal_id="d1",
        other_deals=[deal("d1", "default", "closedlost"), *deals],
        stages=CATALOG,
        rules=rules,
        needs_email=needs_email,
        already_recycled_for_deal=already,
    )
    assert verdict.eligible is (expected is None)
    assert verdict.skip_reason is expected


def test_a_contact_open_deal_and_no_email_is_skipped_for_its_email_first() -> None:
    """Its own properties are asked before its deals, so their read can be spared."""
    verdict = contact_eligibility(
        contact("c", email=None),
        deal_id="d1",
        other_deals=[deal("d2", "default", "appointmentscheduled")],
        stages=CATALOG,
        rules=RULES,
        needs_email=True,
        already_recycled_for_deal=False,
    )
    assert verdict.skip_reason is SkipReason.NO_EMAIL


NURTURED = Journey("c", Episode(number=1, state=JourneyState.RECYCLED, reason="Pricing"))
CAME_BACK_TO_SALES = Journey("c", Episode(number=1, state=JourneyState.CAME_BACK, reason="Pricing"))


@pytest.mark.parametrize(
    ("reason", "journey", "fully_done", "expected"),
    [
        (PRICING, None, False, None),
        (PRICING, None, True, SkipReason.ALREADY_RECYCLED),
        (COMPETITOR, None, False, SkipReason.NOT_RECYCLED),
        (COMPETITOR, CAME_BACK_TO_SALES, False, SkipReason.NOT_RECYCLED),
        (COMPETITOR, NURTURED, False, None),  # its running nurture is ended: the plan needs it
        (COMPETITOR, NURTURED, True, SkipReason.ALREADY_RECYCLED),
        (NEVER, None, False, None),  # moves the stage
    ],
    ids=["recycles", "done", "nurtures-nobody", "came-back", "ends-a-nurture", "ended", "sets-a-stage"],
)
def test_settled_unread(
    reason: ReasonRule, journey: Journey | None, fully_done: bool, expected: SkipReason | None
) -> None:
    settled = settled_unread("c", reason, RULES, journey, fully_done=fully_done)
    assert (settled.reason if settled else None) is expected


NO_DEAL_CHECKS = NurtureRules(
    reasons=(),
    recycling=RecyclingRules(skip_contacts_with_open_deals=False, protect_customers=False),
)
OPEN_DEALS_ONLY = NurtureRules(reasons=(), recycling=RecyclingRules(protect_customers=False))


@pytest.mark.parametrize(
    ("person", "reason", "rules", "lifecycle_done", "expected"),
    [
        (contact("c"), PRICING, RULES, False, True),
        (contact("c"), PRICING, RULES, True, False),  # eligibility is not asked again
        (contact("c", "customer"), PRICING, RULES, False, False),
        (contact("c", email=None), PRICING, RULES, False, False),  # the workflow needs an email
        (contact("c", email=None), NEWSLETTER, RULES, False, True),
        (CrmObject("c", {"lifecyclestage": "lead"}, archived=True), PRICING, RULES, False, False),
        (contact("c"), COMPETITOR, RULES, False, False),  # only ends a running nurture
        (contact("c"), NEVER, RULES, False, True),
        (contact("c"), PRICING, NO_DEAL_CHECKS, False, False),
        (contact("c"), PRICING, OPEN_DEALS_ONLY, False, True),
        (contact("c", "customer"), PRICING, OPEN_DEALS_ONLY, False, True),
    ],
    ids=[
        "eligible",
        "lifecycle-done",
        "customer",
        "no-email-for-workflow",
        "no-email-for-list",
        "archived",
        "nurtures-nobody",
        "sets-a-stage",
        "no-deal-checks",
        "open-deal-check-only",
        "customer-not-protected",
    ],
)
def test_other_deals_matter(
    person: CrmObject, reason: ReasonRule, rules: NurtureRules, lifecycle_done: bool, expected: bool
) -> None:
    assert other_deals_matter(person, reason, rules, lifecycle_done=lifecycle_done) is expected


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        (PRICING, "lead"),
        (NEVER, "other"),
        (COMPETITOR, None),
        (ReasonRule("X", "x", True, "subscriber"), "subscriber"),
    ],
)
def test_target_lifecycle(reason: ReasonRule, expected: str | None) -> None:
    assert target_lifecycle(reason, RULES) == expected


@pytest.mark.parametrize(
    ("current", "target", "expected"),
    [
        ("salesqualifiedlead", "lead", LifecycleWrite.CLEAR_THEN_SET),
        ("opportunity", "lead", LifecycleWrite.CLEAR_THEN_SET),
        ("subscriber", "lead", LifecycleWrite.SET),
        ("lead", "lead", LifecycleWrite.NONE),
        (None, "lead", LifecycleWrite.SET),
        ("", "lead", LifecycleWrite.SET),
        ("other", "lead", LifecycleWrite.CLEAR_THEN_SET),
        ("lead", "other", LifecycleWrite.CLEAR_THEN_SET),
        ("other", "other", LifecycleWrite.NONE),
        ("portal_custom_stage", "lead", LifecycleWrite.CLEAR_THEN_SET),
        ("opportunity", None, LifecycleWrite.NONE),
    ],
)
def test_lifecycle_writes(current: str | None, target: str | None, expected: LifecycleWrite) -> None:
    assert lifecycle_writes(current, target) is expected


@pytest.mark.parametrize(
    ("sla", "expected"), [(24, NOW + timedelta(days=1)), (0.5, NOW + timedelta(minutes=30))]
)
def test_owner_task_due(sla: float, expected: datetime) -> None:
    assert owner_task_due(NOW, sla) == expected


@pytest.mark.parametrize(
    ("waited", "already", "expected"),
    [
        (timedelta(hours=23, minutes=59), False, False),
        (timedelta(hours=24), False, True),
        (timedelta(days=3), False, True),
        (timedelta(days=3), True, False),
    ],
)
def test_needs_escalation(waited: timedelta, already: bool, expected: bool) -> None:
    assert needs_escalation(NOW - waited, NOW, 24, already) is expected


def plan_for(reason: ReasonRule, contacts: list[CrmObject], **kwargs: Any) -> HandoffPlan:
    arguments: dict[str, Any] = {
        "reason": reason,
        "rules": RULES,
        "deal_id": "d1",
        "contacts": contacts,
        "other_deals_by_contact": {},
        "stages": CATALOG,
        "lifecycle_done": frozenset(),
        "fully_done": frozenset(),
        "now": NOW,
    }
    arguments.update(kwargs)
    return build_plan(**arguments)


def test_plan_recycles_with_markers_and_property_nurture_in_one_set() -> None:
    plan = plan_for(FEATURE, [contact("c1"), contact("c2", "subscriber")])
    first, second = plan.actions
    assert first.lifecycle_write is LifecycleWrite.CLEAR_THEN_SET
    assert second.lifecycle_write is LifecycleWrite.SET
    assert first.set_properties == {
        "lifecyclestage": "lead",
        "handoff_recycled_at": "2026-11-02T09:30:00+00:00",
        "handoff_recycle_reason": "Feature Missing",
        "handoff_source_deal_id": "d1",
        "nurture_track": "feature",
    }
    assert first.nurtures == (WORKFLOW, LIST)  # the property nurture rides in the set batch
    assert plan.skipped == ()


def test_plan_skips_with_reasons_and_resumes_half_done_contacts() -> None:
    plan = plan_for(
        PRICING,
        [contact("open"), contact("cust", "customer"), contact("done"), contact("half", "lead", None)],
        other_deals_by_contact={"open": [deal("d9", "default", "appointmentscheduled")]},
        lifecycle_done=frozenset({"done", "half"}),
        fully_done=frozenset({"done"}),
    )
    assert {(s.contact_id, s.reason) for s in plan.skipped} == {
        ("open", SkipReason.OPEN_DEAL),
        ("cust", SkipReason.CUSTOMER),
        ("done", SkipReason.ALREADY_RECYCLED),
    }
    (half,) = plan.actions
    assert half.contact_id == "half" and half.resumed
    assert half.set_properties == {} and half.nurtures == (WORKFLOW,)


def test_plan_for_reason_that_leaves_contacts_alone() -> None:
    plan = plan_for(COMPETITOR, [contact("c1")])
    assert plan.actions == ()
    assert [s.reason for s in plan.skipped] == [SkipReason.NOT_RECYCLED]


def test_plan_for_reason_that_only_sets_a_stage_writes_no_markers_or_nurtures() -> None:
    plan = plan_for(NEVER, [contact("c1"), contact("c2", "customer")])
    (action,) = plan.actions
    assert action.set_properties == {"lifecyclestage": "other"}
    assert action.nurtures == ()
    assert [s.reason for s in plan.skipped] == [SkipReason.CUSTOMER]


def test_plan_without_deal_has_no_source_deal_marker() -> None:
    plan = plan_for(NEWSLETTER, [contact("c1", "lead")], deal_id=None)
    (action,) = plan.actions
    assert action.lifecycle_write is LifecycleWrite.NONE
    assert "handoff_source_deal_id" not in action.set_properties
    assert action.set_properties["handoff_recycle_reason"] == "Not Interested"
