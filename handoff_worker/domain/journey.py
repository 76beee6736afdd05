"""The contact journey: one person's way between sales and marketing, one episode at a time.

A deal is only one of the ways a person reaches us; marketing nurtures the person. So whatever a
handoff decides about a contact is decided here, from the contact's current episode:

    with sales --(a loss whose reason nurtures)--> recycled --(sales works it again)--> came back
        ^                                            |  ^                                  |
        |                                            +--+ more losses in the same episode  |
        +------------------ (a later loss starts a new episode) ---------------------------+

While recycled, the contact is in ONE reason's nurture, and enters each nurture at most once per
episode however many of its deals are lost, in whatever order the events, retries and resyncs come.
A second loss during an episode keeps the current nurture or switches to the latest reason
(`SecondLossPolicy`, from the nurture YAML); a reason that never nurtures ends the nurture.

Every function here is pure: it takes a journey and an event and returns the next journey plus what
to carry out (nurtures to enter and to leave). The store (handoff/journeys.py) only keeps the
result, and only under the contact's lock.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from handoff_worker.domain.nurture import SecondLossPolicy

# A deal created this long after an episode started is sales working the contact again. The margin
# absorbs clock differences between HubSpot and the worker, and deals created as the handoff ran.
NEW_DEAL_MARGIN = timedelta(minutes=5)


class JourneyState(StrEnum):
    WITH_SALES = "with_sales"  # no episode yet, or sales has the contact
    RECYCLED = "recycled"  # handed to marketing: in a nurture (or a reason that never nurtures)
    CAME_BACK = "came_back"  # sales works the contact again; the nurture was left


class LossDecision(StrEnum):
    """What one loss did to a contact's journey."""

    NEW_EPISODE = "new_episode"  # recycled: an episode starts with this reason's nurture
    SWITCH = "switch"  # second loss, policy switch: leave the current nurture, enter this one
    KEEP = "keep"  # second loss, policy keep (or nothing new to enter): the current nurture stays
    SAME_REASON = "same_reason"  # second loss with the reason the contact is nurtured for
    END = "end"  # a reason that never nurtures: the current nurture is left
    NOT_NURTURED = "not_nurtured"  # a reason that never nurtures, no episode running: nothing
    REPEAT = "repeat"  # this loss was already taken in: as decided then (a retry, a resync)
    CAME_BACK = "came_back"  # not a loss: sales works the contact again (`on_came_back`)


@dataclass(frozen=True)
class Source:
    """A loss taken into an episode (a loss id such as "deal:2001:1"), what it decided, and the
    nurtures it entered: a re-run of that loss enters those again (the ledger skips what is done),
    never the ones an earlier loss entered."""

    loss_id: str
    decision: LossDecision
    entered: tuple[str, ...] = ()


@dataclass(frozen=True)
class Episode:
    """One stretch between sales and marketing. `number` 0 is "never recycled"."""

    number: int = 0
    state: JourneyState = JourneyState.WITH_SALES
    reason: str | None = None  # label of the reason the contact was last recycled for
    nurtures: tuple[str, ...] = ()  # nurture keys the contact is in now (`Nurture.key`)
    entered: tuple[str, ...] = ()  # every nurture key entered this episode: never entered twice
    since: str = ""  # when the episode started (ISO-8601)
    sources: tuple[Source, ...] = ()  # the losses taken in, oldest first
    nurtured_by: str = ""  # the loss whose reason the current nurture is: it carries the enrollments
    left: tuple[tuple[str, str], ...] = ()  # (nurture key, loss id that left it) this episode
    came_back_at: str | None = None
    came_back_how: str | None = None  # e.g. "deal 2009 created", "deal 2001 reopened"

    @property
    def source_ids(self) -> tuple[str, ...]:
        return tuple(source.loss_id for source in self.sources)

    def source(self, loss_id: str) -> Source | None:
        return next((source for source in self.sources if source.loss_id == loss_id), None)


@dataclass(frozen=True)
class Journey:
    contact_id: str
    episode: Episode = field(default_factory=Episode)
    # The episode this change closed, for the contact's history (not stored with the journey).
    closed: Episode | None = field(default=None, compare=False)

    def as_dict(self) -> dict[str, Any]:
        e = self.episode
        return {
            "contact_id": self.contact_id,
            "number": e.number,
            "state": e.state.value,
            "reason": e.reason,
            "nurtures": list(e.nurtures),
            "entered": list(e.entered),
            "since": e.since,
            "sources": [[s.loss_id, s.decision.value, list(s.entered)] for s in e.sources],
            "nurtured_by": e.nurtured_by,
            "left": [list(pair) for pair in e.left],
            "came_back_at": e.came_back_at,
            "came_back_how": e.came_back_how,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Journey:
        episode = Episode(
            number=int(raw.get("number", 0)),
            state=JourneyState(raw.get("state", JourneyState.WITH_SALES)),
            reason=raw.get("reason"),
            nurtures=tuple(raw.get("nurtures", ())),
            entered=tuple(raw.get("entered", ())),
            since=str(raw.get("since", "")),
            sources=tuple(
                Source(str(loss_id), LossDecision(decision), tuple(entered))
                for loss_id, decision, entered in raw.get("sources", ())
            ),
            nurtured_by=str(raw.get("nurtured_by", "")),
            left=tuple((str(k), str(s)) for k, s in raw.get("left", ())),
            came_back_at=raw.get("came_back_at"),
            came_back_how=raw.get("came_back_how"),
        )
        return cls(str(raw["contact_id"]), episode)


@dataclass(frozen=True)
class LossSeen:
    """A loss as the journey needs it: which, with what reason and which nurtures that reason has."""

    loss_id: str  # "<kind>:<record id>:<sequence>", see handoff/ledger.py
    reason: str  # the reason's label
    nurtures: tuple[str, ...]  # the reason's nurture keys, in the YAML's order
    nurtures_contacts: bool  # False for a reason that never nurtures (`recycle: false`)
    # When the lost deal was created (HubSpot's createdate), if known: a deal created after the
    # contact's episode started means sales worked the contact again.
    opened_at: datetime | None = None

    @property
    def record(self) -> str:
        return record_of(self.loss_id)


def record_of(loss_id: str) -> str:
    """The record a loss id belongs to ("deal:2001:2" -> "deal:2001")."""
    return loss_id.rsplit(":", 1)[0]


@dataclass(frozen=True)
class JourneyStep:
    """The journey after an event, and what to carry out for it."""

    journey: Journey
    decision: LossDecision
    enter: tuple[str, ...] = ()  # nurture keys to enter now
    leave: tuple[str, ...] = ()  # nurture keys to leave now

    @property
    def changed(self) -> bool:
        return self.decision is not LossDecision.REPEAT and self.decision is not LossDecision.NOT_NURTURED


def on_loss(journey: Journey, loss: LossSeen, policy: SecondLossPolicy, now: str) -> JourneyStep:
    """A loss of one of the contact's deals (or the contact's own disqualification) reached a handoff
    that found the contact eligible. `now` is ISO-8601."""
    episode = journey.episode
    seen = episode.source(loss.loss_id)
    if seen is not None:
        return _repeat(journey, seen)
    how = _sales_had_it_since(episode, loss)
    if how is not None:
        # Sales had the contact again since the episode started (whether or not an event said
        # so): the episode ends there and this loss starts the next one.
        closed = _came_back(episode, at=now, how=how, by=f"came_back:{loss.loss_id}")
        if not loss.nurtures_contacts:
            ended = replace(closed, sources=(*closed.sources, Source(loss.loss_id, LossDecision.END)))
            ended = replace(ended, left=(*episode.left, *((k, loss.loss_id) for k in episode.nurtures)))
            return JourneyStep(replace(journey, episode=ended), LossDecision.END, leave=episode.nurtures)
        step = on_loss(replace(journey, episode=closed), loss, policy, now)
        # The old nurture is left by this loss (kept in the new episode's record of what it left),
        # except what the new one enters again.
        leave = tuple(k for k in episode.nurtures if k not in step.enter)
        fresh = replace(step.journey.episode, left=tuple((k, loss.loss_id) for k in leave))
        return replace(step, journey=replace(step.journey, episode=fresh, closed=closed), leave=leave)
    if episode.state is not JourneyState.RECYCLED:
        if not loss.nurtures_contacts:
            return JourneyStep(journey, LossDecision.NOT_NURTURED)
        started = Episode(
            number=episode.number + 1,
            state=JourneyState.RECYCLED,
            reason=loss.reason,
            nurtures=loss.nurtures,
            entered=loss.nurtures,
            since=now,
            sources=(Source(loss.loss_id, LossDecision.NEW_EPISODE, loss.nurtures),),
            nurtured_by=loss.loss_id,
        )
        return JourneyStep(replace(journey, episode=started), LossDecision.NEW_EPISODE, enter=loss.nurtures)
    # A second loss during the episode.
    if not loss.nurtures_contacts:
        ended = replace(
            episode,
            reason=loss.reason,
            nurtures=(),
            sources=(*episode.sources, Source(loss.loss_id, LossDecision.END)),
            nurtured_by=loss.loss_id,
            left=(*episode.left, *((key, loss.loss_id) for key in episode.nurtures)),
        )
        return JourneyStep(replace(journey, episode=ended), LossDecision.END, leave=episode.nurtures)
    if episode.nurtures and loss.reason == episode.reason:
        return _joined(journey, loss.loss_id, LossDecision.SAME_REASON)
    # A nurture is entered at most once per episode: one left earlier is not entered again.
    wanted = tuple(k for k in loss.nurtures if k in episode.nurtures or k not in episode.entered)
    enter = tuple(k for k in wanted if k not in episode.nurtures)
    if episode.nurtures and (policy is SecondLossPolicy.KEEP or not enter):
        return _joined(journey, loss.loss_id, LossDecision.KEEP)
    leave = tuple(k for k in episode.nurtures if k not in wanted)
    switched = replace(
        episode,
        reason=loss.reason,
        nurtures=wanted,
        entered=(*episode.entered, *enter),
        sources=(*episode.sources, Source(loss.loss_id, LossDecision.SWITCH, enter)),
        nurtured_by=loss.loss_id,
        left=(*episode.left, *((key, loss.loss_id) for key in leave)),
    )
    return JourneyStep(replace(journey, episode=switched), LossDecision.SWITCH, enter=enter, leave=leave)


def on_came_back(journey: Journey, *, at: str, how: str) -> JourneyStep:
    """Sales works a recycled contact again: the current nurture is left, the episode closes.
    A contact that is not recycled has nothing to leave (a no-op, so a duplicate event is harmless).
    The nurtures to leave are recorded as left by `came_back:<at>`."""
    episode = journey.episode
    if episode.state is not JourneyState.RECYCLED:
        return JourneyStep(journey, LossDecision.REPEAT)
    back = _came_back(episode, at=at, how=how, by=f"came_back:{at}")
    return JourneyStep(replace(journey, episode=back), LossDecision.CAME_BACK, leave=episode.nurtures)


def _came_back(episode: Episode, *, at: str, how: str, by: str) -> Episode:
    return replace(
        episode,
        state=JourneyState.CAME_BACK,
        nurtures=(),
        left=(*episode.left, *((key, by) for key in episode.nurtures)),
        came_back_at=at,
        came_back_how=how,
    )


def _sales_had_it_since(episode: Episode, loss: LossSeen) -> str | None:
    """How a new loss shows that sales worked the contact after its episode started, if it does:
    a later loss of a deal the episode took in (the deal was reopened in between), or a deal
    created after the episode started (a new deal with the recycled contact)."""
    if episode.state is not JourneyState.RECYCLED:
        return None
    record = loss.record
    named = record.replace(":", " ", 1)
    if any(record_of(s.loss_id) == record and s.loss_id != loss.loss_id for s in episode.sources):
        return f"{named} reopened"
    since = _moment(episode.since)
    if loss.opened_at is not None and since is not None and loss.opened_at > since + NEW_DEAL_MARGIN:
        return f"{named} created"
    return None


def _moment(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _joined(journey: Journey, loss_id: str, decision: LossDecision) -> JourneyStep:
    """The loss joins the episode and changes nothing the contact is in."""
    episode = journey.episode
    joined = replace(episode, sources=(*episode.sources, Source(loss_id, decision)))
    return JourneyStep(replace(journey, episode=joined), decision)


def _repeat(journey: Journey, source: Source) -> JourneyStep:
    """The same loss again (a retry, a resync, a replay): what it was to enter and leave, again, as
    far as still current; the ledger then skips what is already done."""
    enter, leave = _owed(journey.episode, source)
    return JourneyStep(journey, LossDecision.REPEAT, enter=enter, leave=leave)


def _owed(episode: Episode, source: Source) -> tuple[tuple[str, ...], tuple[str, ...]]:
    enter = tuple(key for key in source.entered if key in episode.nurtures)
    leave = tuple(key for key, by in episode.left if by == source.loss_id)
    return enter, leave


def owed_by(journey: Journey, loss_id: str) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """The nurture keys this loss has to enter and to leave for the contact, or None when the loss
    was never taken into the contact's journey."""
    source = journey.episode.source(loss_id)
    return None if source is None else _owed(journey.episode, source)


def repeated_decision(journey: Journey, loss_id: str) -> LossDecision | None:
    """What this loss decided for the contact when it was first taken in (None: not taken in)."""
    source = journey.episode.source(loss_id)
    return None if source is None else source.decision
