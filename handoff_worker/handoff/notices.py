"""Telling marketing: once per episode of a contact, a HubSpot task and/or a chat message.

A reason's `tell_marketing:` asks for either or both when a contact's episode starts with it (or
runs under it: a later loss of the same episode tells nobody again). Each channel has its own mark
per (contact, episode), set in Redis with NX *before* the task or message goes out, so retries,
resyncs and two deals of one contact lost at once tell marketing once. The other order could tell
twice; this one may lose one notice when the worker dies between mark and send, which the log says.

Messages go through a `MessagePoster` (chat_webhook.py posts to Slack or Teams): the webhook is
not HubSpot, and its failure never fails the handoff. A message carries the contact's name, the
reason and the contact's HubSpot link, nothing else. With `marketing_notices > daily_digest` the
episodes of a day are kept in a Redis list and the beat's `send_digests` posts one message per
day, the day after.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol

import redis

from handoff_worker.domain.journey import Journey, JourneyState
from handoff_worker.domain.models import CrmObject, NewTask
from handoff_worker.domain.nurture import MarketingNotices, ReasonRule
from handoff_worker.errors import HubSpotError, MessageNotSent
from handoff_worker.handoff.ledger import LEDGER_TTL_SECONDS
from handoff_worker.handoff.owner_tasks import NOTHING_CREATED
from handoff_worker.handoff.run_record import ContactOutcome, HandoffRun
from handoff_worker.hubspot.protocol import HubSpotGateway
from handoff_worker.state import KEY_PREFIX

log = logging.getLogger(__name__)

TASK = "task"
MESSAGE = "message"
# A day's digest waits at most this long for a beat that posts it.
DIGEST_TTL_SECONDS = 8 * 24 * 3600
DIGEST_LOCK_KEY = f"{KEY_PREFIX}lock:notice-digest"
DIGEST_LOCK_SECONDS = 120
# One digest message lists at most this many contacts; the rest are counted.
DIGEST_MAX_LINES = 50

EnvLookup = Callable[[str], str | None]


class MessagePoster(Protocol):
    def post(self, url: str, text: str) -> None:
        """Post `text`; raises MessageNotSent (never naming the URL) once its retries are spent."""
        ...


def notice_mark_key(contact_id: str, episode: int, channel: str) -> str:
    return f"{KEY_PREFIX}notice:{contact_id}:{episode}:{channel}"


def digest_key(day: date) -> str:
    return f"{KEY_PREFIX}notice-digest:{day.isoformat()}"


def digest_sending_key(day: date) -> str:
    return f"{KEY_PREFIX}notice-digest-sending:{day.isoformat()}"


def contact_link(hub_id: str, contact_id: str) -> str:
    return f"https://app.hubspot.com/contacts/{hub_id}/contact/{contact_id}"


def contact_name(contact: CrmObject | None) -> str:
    if contact is None:
        return ""
    return " ".join(p for p in (contact.get("firstname"), contact.get("lastname")) if p)


@dataclass(frozen=True)
class Notice:
    """One episode start, as much of it as marketing is told: no email, no other property."""

    contact_id: str
    name: str
    reason: str
    link: str

    def line(self) -> str:
        return f"{self.name or 'A contact'} ({self.reason}): {self.link}"

    def as_dict(self) -> dict[str, str]:
        return {"contact_id": self.contact_id, "name": self.name, "reason": self.reason, "link": self.link}


def episode_message(notice: Notice) -> str:
    return f"Handed to marketing: {notice.line()}"


def digest_message(day: date, notices: Sequence[Notice]) -> str:
    count = len(notices)
    head = f"Handed to marketing on {day.isoformat()}: {count} contact{'s' if count != 1 else ''}"
    lines = [f"- {n.line()}" for n in notices[:DIGEST_MAX_LINES]]
    if count > DIGEST_MAX_LINES:
        lines.append(f"- and {count - DIGEST_MAX_LINES} more")
    return "\n".join([head, *lines])


def webhook_url(notices: MarketingNotices, env: EnvLookup) -> tuple[str | None, str]:
    """The webhook URL, or None and why not (naming the variable, never its value)."""
    name = notices.webhook_url_env
    if not name:
        return None, "marketing_notices > webhook_url_env is not set in the nurture YAML"
    url = (env(name) or "").strip()
    if not url.startswith(("https://", "http://")):
        return (
            None,
            f"the environment variable {name} (marketing_notices > webhook_url_env) holds no http(s) URL",
        )
    return url, ""


class MarketingNoticesPhase:
    """The handoff's last phase before it finishes: tell marketing about the episodes it started."""

    def __init__(
        self,
        gateway: HubSpotGateway,
        client: redis.Redis,
        poster: MessagePoster | None,
        env: EnvLookup,
        clock: Callable[[], datetime],
    ) -> None:
        self.gateway = gateway
        self.redis = client
        self.poster = poster
        self.env = env
        self.clock = clock

    def apply(
        self,
        run: HandoffRun,
        reason: ReasonRule,
        notices: MarketingNotices,
        journeys: Sequence[Journey],
        contacts: Mapping[str, CrmObject],
    ) -> None:
        tell = reason.tell_marketing
        if tell is None:
            return
        for journey in journeys:
            episode = journey.episode
            result = run.contacts.get(journey.contact_id)
            if episode.state is not JourneyState.RECYCLED or episode.number < 1:
                continue
            if result is not None and result.outcome is ContactOutcome.FAILED:
                continue  # told once its handoff is done (a replay)
            notice = Notice(
                journey.contact_id,
                contact_name(contacts.get(journey.contact_id)),
                reason.label,
                contact_link(notices.hub_id or "", journey.contact_id),
            )
            if tell.task_owner_id and self._mark(notice, episode.number, TASK):
                self._task(notice, episode.number, tell.task_owner_id)
            if tell.message and self._mark(notice, episode.number, MESSAGE):
                self._message(notice, episode.number, notices)

    def _mark(self, notice: Notice, episode: int, channel: str) -> bool:
        key = notice_mark_key(notice.contact_id, episode, channel)
        return bool(self.redis.set(key, self.clock().isoformat(), nx=True, ex=LEDGER_TTL_SECONDS))

    def _unmark(self, notice: Notice, episode: int, channel: str) -> None:
        self.redis.delete(notice_mark_key(notice.contact_id, episode, channel))

    def _task(self, notice: Notice, episode: int, owner_id: str) -> None:
        task = NewTask(
            subject=f"Handed to marketing: {notice.reason}",
            body=(
                f"This contact was handed to marketing for the reason {notice.reason} and is in its "
                "nurture now. Nothing to do unless marketing wants to reach out by hand."
            ),
            owner_id=owner_id,
            due_at=self.clock(),
            contact_id=notice.contact_id,
            priority="LOW",
        )
        try:
            self.gateway.create_task(task)
        except HubSpotError as exc:
            if isinstance(exc, NOTHING_CREATED):
                # Surely nothing was created: a later run of this episode may try again.
                self._unmark(notice, episode, TASK)
            log.warning(
                "marketing task for contact %s (episode %d, owner %s) not created: %s; the handoff goes on",
                notice.contact_id,
                episode,
                owner_id,
                exc,
            )

    def _message(self, notice: Notice, episode: int, notices: MarketingNotices) -> None:
        if notices.daily_digest:
            key = digest_key(self.clock().date())
            pipe = self.redis.pipeline(transaction=True)
            pipe.rpush(key, json.dumps(notice.as_dict()))
            pipe.expire(key, DIGEST_TTL_SECONDS)
            pipe.execute()
            return
        url, why = webhook_url(notices, self.env)
        if self.poster is None:
            url, why = None, "this process sends no messages (no poster wired)"
        if url is None or self.poster is None:
            log.warning(
                "message to marketing for contact %s (episode %d) not sent: %s",
                notice.contact_id,
                episode,
                why,
            )
            return
        try:
            self.poster.post(url, episode_message(notice))
        except MessageNotSent as exc:
            # The mark stays: the webhook may have taken it, and a second message is the worse error.
            log.warning(
                "message to marketing for contact %s (episode %d) not sent: %s; the handoff goes on",
                notice.contact_id,
                episode,
                exc,
            )


def send_digests(
    client: redis.Redis, poster: MessagePoster, notices: MarketingNotices, env: EnvLookup, today: date
) -> list[date]:
    """Post one message per past day with episodes waiting (the beat calls it every hour; today's
    list is still filling). Returns the days posted. A day whose post fails is kept for the next
    call; a day claimed by another beat is left to it."""
    if not client.set(DIGEST_LOCK_KEY, "1", nx=True, ex=DIGEST_LOCK_SECONDS):
        return []
    try:
        url, why = webhook_url(notices, env)
        days = _waiting_days(client, today)
        if days and url is None:
            log.warning("daily digest of %d day(s) not sent: %s", len(days), why)
            return []
        posted = []
        for day in days:
            # Entries move to the day's sending list one by one (atomic each): a message pushed
            # meanwhile is kept, and a failed post leaves them there for the next call.
            while client.lmove(digest_key(day), digest_sending_key(day), "LEFT", "RIGHT") is not None:
                pass
            client.expire(digest_sending_key(day), DIGEST_TTL_SECONDS)
            raw = client.lrange(digest_sending_key(day), 0, -1)
            day_notices = [Notice(**json.loads(item)) for item in raw]
            if not day_notices:
                continue
            try:
                assert url is not None
                poster.post(url, digest_message(day, day_notices))
            except MessageNotSent as exc:
                log.warning("daily digest of %s not sent: %s; tried again at the next run", day, exc)
                continue
            client.delete(digest_sending_key(day))
            posted.append(day)
        return posted
    finally:
        client.delete(DIGEST_LOCK_KEY)


def _waiting_days(client: redis.Redis, today: date) -> list[date]:
    days: set[date] = set()
    for prefix in (digest_key, digest_sending_key):
        pattern = prefix(today).rsplit(":", 1)[0] + ":*"
        for key in client.scan_iter(match=pattern, count=500):
            text = (key.decode() if isinstance(key, bytes) else str(key)).rsplit(":", 1)[1]
            try:
                day = date.fromisoformat(text)
            except ValueError:
                continue
            if day < today:
                days.add(day)
    return sorted(days)
