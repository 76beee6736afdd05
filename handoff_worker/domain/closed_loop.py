"""The closed loop, counted: of the contacts handed to marketing, how many came back to sales, how
many of those then won a deal, and for how much. Pure: a function of the data it is given.

The unit is the contact's *episode* (domain/journey.py): a person recycled once however many of
their deals were lost in that stretch counts once, never once per deal. An episode belongs to the
reason and the kind (lost deal or disqualified lead) of the loss that started it, and to the period
it started in. It came back when its journey says so; it came back and won when a deal of the contact
closed won on or after the day the episode started and before the contact's next episode started.
Revenue adds each won deal once per line, however many of its contacts came back.

Losses (deals lost, leads disqualified) are counted per reason too, so reasons that never nurture
show their losses and no "recycled" figure at all (`recycled` is None): they hand nobody to marketing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from statistics import median


class LossKind(StrEnum):
    """The two ways a person reaches marketing: a lost deal, or a lead disqualified (its record is
    the contact: RecordKind.CONTACT)."""

    DEAL = "deal"
    LEAD = "lead"


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime  # exclusive

    def __contains__(self, moment: datetime) -> bool:
        return self.start <= moment < self.end

    def before(self) -> Period:
        """The period of the same length just before this one."""
        return Period(self.start - (self.end - self.start), self.start)


@dataclass(frozen=True)
class LossRecord:
    """A deal lost or a lead disqualified, with a reason, as the audit records show it."""

    loss_id: str
    kind: LossKind
    reason: str
    at: datetime


@dataclass(frozen=True)
class EpisodeRecord:
    """One episode of one contact's journey, as much as the loop needs."""

    contact_id: str
    number: int
    kind: LossKind  # of the loss that started it
    reason: str  # of the loss that started it
    started: datetime
    came_back: datetime | None = None
    # When the contact's next episode started: a deal won after that belongs to the next one.
    next_started: datetime | None = None


@dataclass(frozen=True)
class WonDeal:
    deal_id: str
    closed: datetime
    amount: float  # in the portal's currency; 0 when the deal has none


@dataclass
class Funnel:
    """One line of the loop: a reason, a kind, a source or everything."""

    lost: int | None = 0  # None where losses do not apply (a contact's source)
    recycled: int | None = 0  # None: a reason that never nurtures
    came_back: int = 0
    won: int = 0
    won_deals: dict[str, float] = field(default_factory=dict)  # deal id -> amount, each deal once
    days_to_come_back: list[float] = field(default_factory=list)

    @property
    def revenue(self) -> float:
        return sum(self.won_deals.values())

    @property
    def came_back_rate(self) -> float | None:
        return _rate(self.came_back, self.recycled)

    @property
    def won_rate(self) -> float | None:
        """Of those that came back, the share that won."""
        return _rate(self.won, self.came_back)

    @property
    def recycled_to_won_rate(self) -> float | None:
        return _rate(self.won, self.recycled)

    @property
    def median_days_to_come_back(self) -> float | None:
        return round(median(self.days_to_come_back), 1) if self.days_to_come_back else None

    def as_dict(self) -> dict[str, object]:
        return {
            "lost": self.lost,
            "recycled": self.recycled,
            "came_back": self.came_back,
            "came_back_and_won": self.won,
            "revenue": round(float(self.revenue), 2),
            "came_back_rate": _rounded(self.came_back_rate),
            "won_rate": _rounded(self.won_rate),
            "recycled_to_won_rate": _rounded(self.recycled_to_won_rate),
            "median_days_to_come_back": self.median_days_to_come_back,
        }


def _rate(part: int, whole: int | None) -> float | None:
    return part / whole if whole else None


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


@dataclass(frozen=True)
class ReasonLine:
    kind: LossKind
    reason: str
    funnel: Funnel


@dataclass(frozen=True)
class SourceLine:
    source: str  # the contact's original source, HubSpot's value ("" when unknown)
    funnel: Funnel


@dataclass
class LoopFigures:
    period: Period
    overall: Funnel
    previous: Funnel  # the same figures for the period before, for the headline
    by_kind: dict[LossKind, Funnel]
    reasons: list[ReasonLine]
    sources: list[SourceLine]


def count_loop(
    losses: Iterable[LossRecord],
    episodes: Iterable[EpisodeRecord],
    won_deals: Mapping[str, Sequence[WonDeal]],
    sources: Mapping[str, str],
    *,
    never_nurtured: frozenset[str],
    period: Period,
) -> LoopFigures:
    """The loop for `period` and, for the headline, the period just before it.

    `won_deals`: contact id -> that contact's closed-won deals; `sources`: contact id -> original
    source; `never_nurtured`: labels of the reasons that hand nobody to marketing."""
    previous_period = period.before()
    loss_list = list(losses)
    episode_list = list(episodes)

    overall, previous = Funnel(), Funnel()
    by_kind: dict[LossKind, Funnel] = {kind: Funnel() for kind in LossKind}
    reasons: dict[tuple[LossKind, str], Funnel] = {}
    by_source: dict[str, Funnel] = {}

    def reason_funnel(kind: LossKind, reason: str) -> Funnel:
        if (kind, reason) not in reasons:
            reasons[(kind, reason)] = Funnel(recycled=None if reason in never_nurtured else 0)
        return reasons[(kind, reason)]

    for loss in loss_list:
        if loss.at in period:
            for funnel in (overall, by_kind[loss.kind], reason_funnel(loss.kind, loss.reason)):
                funnel.lost = (funnel.lost or 0) + 1
        elif loss.at in previous_period:
            previous.lost = (previous.lost or 0) + 1

    for episode in episode_list:
        if episode.started in period:
            source = by_source.setdefault(sources.get(episode.contact_id, ""), Funnel(lost=None))
            lines = [overall, by_kind[episode.kind], reason_funnel(episode.kind, episode.reason), source]
        elif episode.started in previous_period:
            lines = [previous]
        else:
            continue
        won = _won_by(episode, won_deals.get(episode.contact_id, ()))
        for funnel in lines:
            _add_episode(funnel, episode, won)

    reason_lines = [ReasonLine(kind, reason, funnel) for (kind, reason), funnel in reasons.items()]
    reason_lines.sort(
        key=lambda line: (list(LossKind).index(line.kind), -(line.funnel.lost or 0), line.reason)
    )
    source_lines = [SourceLine(source, funnel) for source, funnel in by_source.items()]
    source_lines.sort(key=lambda line: (line.source == "", -(line.funnel.recycled or 0), line.source))
    return LoopFigures(period, overall, previous, by_kind, reason_lines, source_lines)


def _add_episode(funnel: Funnel, episode: EpisodeRecord, won: Sequence[WonDeal]) -> None:
    if funnel.recycled is None:
        # An episode is only ever started by a reason that nurtures; a reason the YAML has since
        # turned off still shows the episodes it started.
        funnel.recycled = 0
    funnel.recycled += 1
    if episode.came_back is None:
        return
    funnel.came_back += 1
    funnel.days_to_come_back.append((episode.came_back - episode.started) / timedelta(days=1))
    if won:
        funnel.won += 1
        funnel.won_deals.update((deal.deal_id, deal.amount) for deal in won)


def _won_by(episode: EpisodeRecord, deals: Sequence[WonDeal]) -> list[WonDeal]:
    """The contact's won deals that belong to this episode: closed on or after the day it started
    (a close date is often a day, at midnight) and before the contact's next episode."""
    if episode.came_back is None:
        return []
    day_started = episode.started.replace(hour=0, minute=0, second=0, microsecond=0)
    return [
        deal
        for deal in deals
        if deal.closed >= day_started and (episode.next_started is None or deal.closed < episode.next_started)
    ]
