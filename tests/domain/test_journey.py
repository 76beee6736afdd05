"""The contact journey's transitions, table by table: pure functions of a journey and an event."""

from __future__ import annotations

from datetime import datetime

import pytest

from handoff_worker.domain.journey import (
    Episode,
    Journey,
    JourneyState,
    LossDecision,
    LossSeen,
    Source,
    on_came_back,
    on_loss,
    owed_by,
)
from handoff_worker.domain.nurture import SecondLossPolicy

KEEP, SWITCH = SecondLossPolicy.KEEP, SecondLossPolicy.SWITCH
PRICING = ("workflow:5102", "list:702")
NOT_READY = ("workflow:5103", "list:702")
FEATURE = ("workflow:5104",)


def loss(loss_id: str, reason: str, nurtures: tuple[str, ...]) -> LossSeen:
    return LossSeen(loss_id, reason, nurtures, nurtures_contacts=reason != "Competitor")


def recycled(*sources: Source, reason: str = "Pricing", nurtures: tuple[str, ...] = PRICING) -> Journey:
    return Journey(
        "3001",
        Episode(
            number=1,
            state=JourneyState.RECYCLED,
            reason=reason,
            nurtures=nurtures,
            entered=nurtures,
            since="2026-12-01T10:00:00",
            sources=sources or (Source("deal:2001:1", LossDecision.NEW_EPISODE, nurtures),),
            nurtured_by=(sources[-1].loss_id if sources else "deal:2001:1"),
        ),
    )


FRESH = Journey("3001")
CAME_BACK = Journey("3001", Episode(number=1, state=JourneyState.CAME_BACK, reason="Pricing"))
IN_PRICING = recycled()


@pytest.mark.parametrize(
    ("journey", "seen", "policy", "decision", "enter", "leave", "now_in"),
    [
        # No episode yet: a nurturing reason starts one; one that never nurtures changes nothing.
        (
            FRESH,
            loss("deal:2001:1", "Pricing", PRICING),
            KEEP,
            LossDecision.NEW_EPISODE,
            PRICING,
            (),
            PRICING,
        ),
        (FRESH, loss("deal:2001:1", "Competitor", ()), KEEP, LossDecision.NOT_NURTURED, (), (), ()),
        # Came back: the next loss starts a new episode, even with the same reason.
        (
            CAME_BACK,
            loss("deal:2009:1", "Pricing", PRICING),
            KEEP,
            LossDecision.NEW_EPISODE,
            PRICING,
            (),
            PRICING,
        ),
        # A second deal lost with the same reason: nothing new, under either policy.
        (
            IN_PRICING,
            loss("deal:2002:1", "Pricing", PRICING),
            KEEP,
            LossDecision.SAME_REASON,
            (),
            (),
            PRICING,
        ),
        (
            IN_PRICING,
            loss("deal:2002:1", "Pricing", PRICING),
            SWITCH,
            LossDecision.SAME_REASON,
            (),
            (),
            PRICING,
        ),
        # Another reason: keep stays; switch leaves what the new reason lacks and enters the rest,
        # a shared list staying (neither left nor entered again).
        (IN_PRICING, loss("deal:2002:1", "Feature", FEATURE), KEEP, LossDecision.KEEP, (), (), PRICING),
        (
            IN_PRICING,
            loss("deal:2002:1", "Not Ready", NOT_READY),
            SWITCH,
            LossDecision.SWITCH,
            ("workflow:5103",),
            ("workflow:5102",),
            NOT_READY,
        ),
        # A reason that never nurtures ends the nurture, whatever the policy.
        (IN_PRICING, loss("deal:2002:1", "Competitor", ()), KEEP, LossDecision.END, (), PRICING, ()),
        (IN_PRICING, loss("deal:2002:1", "Competitor", ()), SWITCH, LossDecision.END, (), PRICING, ()),
        # The same loss again (retry, resync, replay): what it owed, nothing new.
        (
            IN_PRICING,
            loss("deal:2001:1", "Pricing", PRICING),
            KEEP,
            LossDecision.REPEAT,
            PRICING,
            (),
            PRICING,
        ),
        (
            IN_PRICING,
            loss("deal:2001:1", "Feature", FEATURE),
            SWITCH,
            LossDecision.REPEAT,
            PRICING,
            (),
            PRICING,
        ),
        # A later loss of the deal that started the episode: it was reopened, so a new episode.
        (
            IN_PRICING,
            loss("deal:2001:2", "Feature", FEATURE),
            KEEP,
            LossDecision.NEW_EPISODE,
            FEATURE,
            PRICING,
            FEATURE,
        ),
        (IN_PRICING, loss("deal:2001:2", "Competitor", ()), KEEP, LossDecision.END, (), PRICING, ()),
    ],
)
def test_on_loss(
    journey: Journey,
    seen: LossSeen,
    policy: SecondLossPolicy,
    decision: LossDecision,
    enter: tuple[str, ...],
    leave: tuple[str, ...],
    now_in: tuple[str, ...],
) -> None:
    step = on_loss(journey, seen, policy, "2026-12-01T12:00:00")
    assert (step.decision, step.enter, step.leave) == (decision, enter, leave)
    assert step.journey.episode.nurtures == now_in
    # Whatever happened, the loss is now taken in: running it again owes exactly the same.
    if step.decision is not LossDecision.NOT_NURTURED:
        again = on_loss(step.journey, seen, policy, "2026-12-01T13:00:00")
        assert again.decision is LossDecision.REPEAT and again.journey == step.journey
        assert (again.enter, again.leave) == (step.enter, step.leave)
        assert owed_by(step.journey, seen.loss_id) == (step.enter, step.leave)


@pytest.mark.parametrize(
    ("created", "decision"),
    [
        ("2026-12-01T09:00:00+00:00", LossDecision.KEEP),  # existed before: lost alongside
        ("2026-12-01T10:03:00+00:00", LossDecision.KEEP),  # within the margin of the episode's start
        ("2026-12-01T10:30:00+00:00", LossDecision.NEW_EPISODE),  # a new deal: sales had it again
    ],
)
def test_a_deal_created_after_the_episode_started_starts_the_next_one(
    created: str, decision: LossDecision
) -> None:
    seen = LossSeen("deal:2050:1", "Feature", FEATURE, True, datetime.fromisoformat(created))
    step = on_loss(IN_PRICING, seen, KEEP, "2026-12-01T11:00:00+00:00")
    assert step.decision is decision
    if decision is LossDecision.NEW_EPISODE:
        assert (step.enter, step.leave) == (FEATURE, PRICING)
        assert step.journey.closed is not None and step.journey.closed.came_back_how == "deal 2050 created"
        assert step.journey.episode.number == 2


def test_each_nurture_is_entered_at_most_once_per_episode_whatever_the_order() -> None:
    """Pricing, then Not Ready (switch), then Pricing again: the Pricing workflow was left and is
    not entered again in the same episode; the contact stays where it is."""
    journey = on_loss(FRESH, loss("deal:1:1", "Pricing", PRICING), SWITCH, "t1").journey
    switched = on_loss(journey, loss("deal:2:1", "Not Ready", NOT_READY), SWITCH, "t2")
    back = on_loss(switched.journey, loss("deal:3:1", "Pricing", PRICING), SWITCH, "t3")
    # Only the shared list would be "new" and it is already current: nothing to enter, so keep.
    assert back.decision is LossDecision.KEEP and back.enter == () and back.leave == ()
    assert back.journey.episode.nurtures == NOT_READY
    entered = [k for s in back.journey.episode.sources for k in s.entered]
    assert len(entered) == len(set(entered))


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_two_losses_in_either_order_enter_one_nurture(order: tuple[int, int]) -> None:
    losses = [loss("deal:1:1", "Pricing", PRICING), loss("deal:2:1", "Feature", FEATURE)]
    journey = FRESH
    entered: list[str] = []
    for i in order:
        step = on_loss(journey, losses[i], KEEP, "t")
        journey = step.journey
        entered.extend(step.enter)
    assert journey.episode.number == 1 and len(journey.episode.sources) == 2
    assert entered == list(losses[order[0]].nurtures)


def test_came_back_leaves_the_nurture_and_the_next_loss_starts_a_new_episode() -> None:
    back = on_came_back(IN_PRICING, at="2026-12-02T09:00:00", how="deal 2009 created")
    assert back.decision is LossDecision.CAME_BACK and back.leave == PRICING
    assert back.journey.episode.state is JourneyState.CAME_BACK
    assert back.journey.episode.came_back_how == "deal 2009 created"
    assert on_came_back(back.journey, at="later", how="again").leave == ()  # a duplicate is harmless
    step = on_loss(back.journey, loss("deal:2009:1", "Pricing", PRICING), KEEP, "2026-12-03")
    assert step.decision is LossDecision.NEW_EPISODE and step.journey.episode.number == 2


def test_journey_survives_storage() -> None:
    step = on_loss(IN_PRICING, loss("deal:2002:1", "Not Ready", NOT_READY), SWITCH, "t")
    assert Journey.from_dict(step.journey.as_dict()) == step.journey
