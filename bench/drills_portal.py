"""A stream of lost deals for the sandbox, and the check of HubSpot's final state against it.

The expectations are written here from the shipped `config/nurture.yaml`, independently of the
worker's own rules code: a misunderstanding in the engine cannot hide in its own yardstick.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from handoff_worker.sandbox.testing import SandboxControl


@dataclass(frozen=True)
class Nurtures:
    """What the shipped config/nurture.yaml asks for one reason."""

    lifecycle: str | None  # None: the contact's stage is left alone
    workflows: tuple[int, ...] = ()
    lists: tuple[str, ...] = ()
    properties: tuple[tuple[str, str], ...] = ()


SHIPPED_RULES: dict[str, Nurtures] = {
    "Can't Fulfill Their Needs": Nurtures("lead", workflows=(5104,)),
    "Competitor": Nurtures(None),
    "Feature Missing": Nurtures("lead", workflows=(5104,)),
    "Not Interested": Nurtures("lead", lists=("701",)),
    "Not a Fit - Never Will Be": Nurtures("other"),
    "Not a Fit - Might Be in the Future": Nurtures("lead", workflows=(5105,)),
    "Not Ready": Nurtures("lead", workflows=(5103,), properties=(("nurture_track", "quarterly_checkin"),)),
    "Not a Prospect": Nurtures(None),
    "Pricing": Nurtures("lead", workflows=(5102,), lists=("702",)),
}
# Most losses carry a reason that starts a nurture; some none (an owner task), some never nurtured.
REASON_WEIGHTS: dict[str | None, int] = {
    "Pricing": 5,
    "Not Ready": 4,
    "Feature Missing": 3,
    "Not Interested": 3,
    "Not a Fit - Might Be in the Future": 2,
    "Can't Fulfill Their Needs": 1,
    "Competitor": 2,
    "Not a Fit - Never Will Be": 1,
    "Not a Prospect": 1,
    None: 1,
}


@dataclass(frozen=True)
class PlannedContact:
    contact_id: str
    email: str
    lifecycle: str
    on_other_open_deal: bool

    @property
    def eligible(self) -> bool:
        return self.lifecycle not in {"customer", "evangelist"} and not self.on_other_open_deal


@dataclass(frozen=True)
class PlannedDeal:
    deal_id: str
    reason: str | None
    contacts: tuple[PlannedContact, ...]


@dataclass
class Stream:
    deals: list[PlannedDeal]
    other_open_deals: dict[str, list[str]] = field(default_factory=dict)  # deal id -> contact ids

    @property
    def contacts(self) -> list[PlannedContact]:
        return [c for d in self.deals for c in d.contacts]


def plan_stream(
    count: int, *, rng: random.Random, first_deal: int = 10_000, open_deal_share: float = 0.15
) -> Stream:
    """`count` open deals with 1-5 contacts each; about one contact in ten a customer and
    `open_deal_share` of them also on another deal that stays open."""
    reasons, weights = zip(*REASON_WEIGHTS.items(), strict=True)
    deals, other_open = [], {}
    next_contact = first_deal * 10
    for index in range(count):
        contacts = []
        for _ in range(rng.randint(1, 5)):
            next_contact += 1
            lifecycle = (
                "customer" if rng.random() < 0.1 else rng.choice(["salesqualifiedlead", "opportunity"])
            )
            contacts.append(
                PlannedContact(
                    str(next_contact),
                    f"c{next_contact}@drill.example",
                    lifecycle,
                    on_other_open_deal=rng.random() < open_deal_share,
                )
            )
        deal_id = str(first_deal + index)
        deals.append(PlannedDeal(deal_id, rng.choices(reasons, weights)[0], tuple(contacts)))
        busy = [c.contact_id for c in contacts if c.on_other_open_deal]
        if busy:
            other_open[str(first_deal + 500_000 + index)] = busy
    return Stream(deals, other_open)


def seed_stream(control: SandboxControl, stream: Stream) -> None:
    """Load the deals open, as they stand before the reps lose them (no webhooks for a seed)."""
    deals: list[dict[str, Any]] = [
        {
            "id": d.deal_id,
            "properties": {
                "dealname": f"Drill deal {d.deal_id}",
                "pipeline": "default",
                "dealstage": "contractsent",
                "hubspot_owner_id": "7001",
            },
        }
        for d in stream.deals
    ]
    deals += [
        {
            "id": deal_id,
            "properties": {
                "dealname": f"Open {deal_id}",
                "pipeline": "default",
                "dealstage": "qualifiedtobuy",
            },
        }
        for deal_id in stream.other_open_deals
    ]
    contacts = [
        {
            "id": c.contact_id,
            "properties": {"email": c.email, "lifecyclestage": c.lifecycle, "firstname": "Drill"},
        }
        for c in stream.contacts
    ]
    associations = [{"deal": d.deal_id, "contact": c.contact_id} for d in stream.deals for c in d.contacts]
    associations += [
        {"deal": deal_id, "contact": contact_id}
        for deal_id, contact_ids in stream.other_open_deals.items()
        for contact_id in contact_ids
    ]
    control.seed({"deals": deals, "contacts": contacts, "associations": associations})


def lose(control: SandboxControl, deal: PlannedDeal) -> None:
    """A rep moves the deal to closed lost (with its reason, when it has one): signed webhooks follow."""
    control.lose_deal(deal.deal_id, deal.reason)


# --------------------------------------------------------------------------- the check


@dataclass
class Verdict:
    expected: int  # deals whose handoff (or owner task) should be visible in HubSpot
    done: int
    duplicates: int  # contacts enrolled twice in one workflow + owner tasks beyond one
    repeat_calls: int  # enrollment calls HubSpot answered "already enrolled" (harmless, wasted)
    cleared: int  # contacts left with an empty lifecycle stage
    problems: list[str]

    @property
    def ok(self) -> bool:
        return self.done == self.expected and not self.duplicates and not self.cleared


def check(control: SandboxControl, stream: Stream, deals: Iterable[PlannedDeal] | None = None) -> Verdict:
    """Compare the sandbox with what every lost deal in `deals` (default: all) should have left."""
    wanted = list(stream.deals if deals is None else deals)
    contact_ids = [c.contact_id for d in wanted for c in d.contacts]
    contacts = {c["id"]: c["properties"] for c in control.objects("contacts", contact_ids)}
    enrollments = control.enrollments()
    enrolled = Counter(
        (a["workflowId"], a.get("contactId")) for a in enrollments["attempts"] if a["outcome"] == "enrolled"
    )
    repeats = sum(1 for a in enrollments["attempts"] if a["outcome"] == "already_enrolled")
    members = {lid: set(view["memberIds"]) for lid, view in control.list_memberships().items()}
    problems: list[str] = []
    done = duplicates = 0
    for deal in wanted:
        deal_problems, deal_duplicates = _check_deal(control, deal, contacts, enrolled, members)
        duplicates += deal_duplicates
        problems += deal_problems
        done += not deal_problems
    cleared = sum(1 for props in contacts.values() if props.get("lifecyclestage") == "")
    return Verdict(len(wanted), done, duplicates, repeats, cleared, problems)


def _check_deal(
    control: SandboxControl,
    deal: PlannedDeal,
    contacts: dict[str, dict[str, Any]],
    enrolled: Counter[tuple[int, str | None]],
    members: dict[str, set[str]],
) -> tuple[list[str], int]:
    problems: list[str] = []
    duplicates = 0
    tasks = control.associated_ids("deals", deal.deal_id, "tasks")
    if deal.reason is None:
        duplicates += max(0, len(tasks) - 1)
        if not tasks:
            problems.append(f"deal {deal.deal_id}: lost without a reason but its owner has no task")
    elif tasks:
        problems.append(f"deal {deal.deal_id}: has a reason yet got {len(tasks)} owner task(s)")
    rule = SHIPPED_RULES.get(deal.reason or "", Nurtures(None))
    for contact in deal.contacts:
        props = contacts.get(contact.contact_id, {})
        recycled = deal.reason is not None and contact.eligible and rule.lifecycle is not None
        stage = rule.lifecycle if recycled else contact.lifecycle
        if props.get("lifecyclestage") != stage:
            problems.append(
                f"deal {deal.deal_id} contact {contact.contact_id}: lifecycle "
                f"{props.get('lifecyclestage')!r}, expected {stage!r}"
            )
        nurtured = recycled and rule.lifecycle == "lead"
        for workflow in rule.workflows:
            times = enrolled[(workflow, contact.contact_id)]
            duplicates += max(0, times - 1)
            if times != (1 if nurtured else 0):
                problems.append(
                    f"deal {deal.deal_id} contact {contact.contact_id}: in workflow {workflow} {times}x"
                )
        for list_id in rule.lists:
            if (contact.contact_id in members.get(list_id, set())) != nurtured:
                problems.append(
                    f"deal {deal.deal_id} contact {contact.contact_id}: list {list_id} membership"
                )
        for name, value in rule.properties:
            if (props.get(name) == value) != nurtured:
                problems.append(
                    f"deal {deal.deal_id} contact {contact.contact_id}: {name}={props.get(name)!r}"
                )
    return problems, duplicates
