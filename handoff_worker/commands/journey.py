"""`handoff-worker journey`: where a person stands between sales and marketing, as the worker sees it."""

from __future__ import annotations

import json

import click

from handoff_worker.domain.journey import Episode
from handoff_worker.errors import HandoffError
from handoff_worker.handoff.journeys import JourneyStore
from handoff_worker.settings import Settings
from handoff_worker.state import redis_client


@click.command("journey")
@click.argument("contact_ids", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def journey_command(contact_ids: tuple[str, ...], as_json: bool) -> None:
    """Show each contact's journey (by HubSpot contact id): its current episode and the past ones."""
    try:
        settings = Settings.from_env()
    except HandoffError as exc:
        raise click.ClickException(str(exc)) from exc
    store = JourneyStore(redis_client(settings))
    journeys = store.load(list(contact_ids))
    if as_json:
        records = {
            cid: {
                "current": journeys[cid].as_dict() if cid in journeys else None,
                "past": [j.as_dict() for j in store.past_episodes(cid)],
            }
            for cid in contact_ids
        }
        click.echo(json.dumps(records, indent=2))
        return
    for contact_id in contact_ids:
        journey = journeys.get(contact_id)
        if journey is None:
            click.echo(f"contact {contact_id}: no journey (never handed to marketing)")
            continue
        click.echo(f"contact {contact_id}: {describe(journey.episode)}")
        for past in reversed(store.past_episodes(contact_id)):
            click.echo(f"  earlier: {describe(past.episode)}")


def describe(episode: Episode) -> str:
    """One line for people: the episode's state, reason, nurtures, since when, and from which losses."""
    parts = [f"episode {episode.number} {episode.state.value}"]
    if episode.reason:
        parts.append(f"reason {episode.reason!r}")
    parts.append("in " + (", ".join(episode.nurtures) if episode.nurtures else "no nurture"))
    if episode.since:
        parts.append(f"since {episode.since}")
    if episode.sources:
        parts.append("losses " + ", ".join(f"{s.loss_id} ({s.decision.value})" for s in episode.sources))
    if episode.came_back_at:
        parts.append(f"came back {episode.came_back_at}: {episode.came_back_how}")
    return "; ".join(parts)
