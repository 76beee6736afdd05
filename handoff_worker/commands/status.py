"""`handoff-worker status`: one screen of what the deployment holds now, and an exit code for a
monitoring check (0 ok, 1 warning, 2 critical, 3 cannot tell)."""

from __future__ import annotations

import json
import sys
import time

import click
import redis

from handoff_worker.settings import Settings
from handoff_worker.status import Health, Status, format_duration, health, outcome_label, read_status

_LABEL_WIDTH = 26


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the reading as JSON (for machines).")
@click.option(
    "--watch",
    type=click.FloatRange(min=1),
    default=None,
    metavar="SECONDS",
    help="Read again every SECONDS until interrupted (Ctrl-C); the exit code is the last reading's.",
)
def status_command(as_json: bool, watch: float | None) -> None:
    """What is queued, running, waiting for a reason, failed and done in the last hour, the HubSpot
    budget in use and the backlog's ETA at the current pace.

    \b
    Exit codes, for a monitoring check:
      0  all well
      1  warning: dead letters or set-aside messages, the daily budget at its reserve, records
         waiting past the SLA, a backlog over an hour, no recent sweep
      2  critical: handoffs queued and none finished in the last ten minutes (workers down)
      3  cannot tell: Redis cannot be read, or a setting is invalid
    """
    while True:
        code = _show_once(as_json)
        if watch is None:
            sys.exit(int(code))
        try:
            time.sleep(watch)
        except KeyboardInterrupt:
            sys.exit(int(code))


def _show_once(as_json: bool) -> Health:
    try:
        reading = _read()
    except Exception as exc:  # whatever stops the reading, a check must get "cannot tell"
        from handoff_worker.cli_errors import explain

        click.echo(f"handoff-worker status: {explain(exc)}", err=True)  # exit 3: cannot tell
        return Health.UNKNOWN
    code = health(reading)
    if as_json:
        click.echo(json.dumps({**reading.as_dict(), "health": code.name.lower()}, indent=2))
    else:
        click.echo(render(reading, code))
    return code


def _read() -> Status:
    from handoff_worker.celery_app import create_celery
    from handoff_worker.state import redis_client

    settings = Settings.from_env()
    client = redis_client(settings)
    celery = create_celery(settings)
    try:
        return read_status(client, celery, settings, sla_hours=_sla_hours(settings, client))
    finally:
        celery.close()
        client.close()


def _sla_hours(settings: Settings, client: redis.Redis) -> float | None:
    """The nurture YAML's owner_tasks.sla_hours, or None when the rules cannot be read here (the
    screen then says nothing about the SLA rather than guess it)."""
    from handoff_worker.nurture_config.store import RedisLastGood, RulesStore

    path = settings.handoff_config
    try:
        store = RulesStore(path, last_good=RedisLastGood(client, path))
        return float(store.current().owner_tasks.sla_hours)
    except Exception:
        return None


def render(reading: Status, code: Health) -> str:
    lines = [f"handoff-worker status at {reading.at}", ""]

    def row(label: str, value: object, note: str = "") -> None:
        text = f"{value:,}" if isinstance(value, int) else str(value)
        lines.append(f"{label:<{_LABEL_WIDTH}}{text:>10}{'  ' + note if note else ''}")

    row("queued", sum(reading.queued.values()))
    for name, count in reading.queued.items():
        row(f"  {name}", count)
    row("running", reading.running, f"(messages held by workers: {reading.held_by_workers:,})")
    eta = format_duration(reading.eta_seconds)
    row("backlog", reading.backlog, f"ETA {eta} at {reading.pace_per_minute:.1f} runs/min (last 10 min)")
    row("done in the last hour", reading.done_last_hour)
    for outcome, count in sorted(reading.last_hour.items(), key=lambda item: -item[1]):
        row(f"  {outcome_label(outcome)}", count)
    per_run = reading.api_calls_last_hour / reading.done_last_hour if reading.done_last_hour else 0
    row("  HubSpot calls", reading.api_calls_last_hour, f"({per_run:.1f} per run)" if per_run else "")
    waiting = sum(w.count for w in reading.waiting.values())
    oldest = max((w.oldest_seconds for w in reading.waiting.values()), default=0.0)
    past_sla = sum(w.past_sla for w in reading.waiting.values())
    sla = f", {past_sla:,} past the {reading.sla_hours:g} h SLA" if reading.sla_hours is not None else ""
    row("waiting for a reason", waiting, f"oldest {format_duration(oldest)}{sla}" if waiting else "")
    for kind, summary in reading.waiting.items():
        if summary.count:
            row(f"  {kind}s", summary.count)
    dead = sum(reading.dead_letters.values())
    row("failed (dead letters)", dead, "`handoff-worker failures` lists them" if dead else "")
    budget = reading.budget
    row(
        "HubSpot budget in use",
        f"{budget['account_used']}/{budget['account_limit']}",
        f"per {budget['account_window_seconds']:g} s; search {budget['search_used']}/"
        f"{budget['search_limit']} per {budget['search_window_seconds']:g} s"
        + (f"; paused {budget['paused_seconds']:g} s" if budget["paused_seconds"] else ""),
    )
    if budget["daily_limit"] is not None:
        row(
            "HubSpot daily budget left",
            budget["daily_remaining"],
            f"of {budget['daily_limit']:,}"
            + ("; reserve reached: bulk work waits" if budget["daily_reserve_reached"] else ""),
        )
    if reading.set_aside:
        row("set-aside queue messages", reading.set_aside, "`handoff-worker failures` lists them")
    if reading.last_good_sweep is not None:
        age = format_duration(reading.last_good_sweep_age_seconds)
        row("last good sweep", f"{age} ago", reading.last_good_sweep)
    else:
        row("last good sweep", "none yet")
    lines.append("")
    for problem in reading.problems:
        lines.append(f"{problem['level'].upper()}: {problem['message']}")
    lines.append(f"status: {code.name}")
    return "\n".join(lines)
