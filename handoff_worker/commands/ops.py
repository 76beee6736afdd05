"""Ops commands: `resync`, `failures`, `replay`, `report`. Registered lazily by `handoff_worker.cli`.

Each reads settings, gets the pieces from `handoff_worker.wiring`, and hands them to the use cases
in `handoff/`: the resync sweep, the inline runs and replay, the closed-loop report.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import click
import redis

from handoff_worker.domain.models import WorkClass
from handoff_worker.errors import HandoffError
from handoff_worker.handoff.deadletter import list_failures
from handoff_worker.handoff.inline import InlineSink, replay_failures
from handoff_worker.handoff.report import closed_loop_report
from handoff_worker.handoff.report_html import RENDERERS
from handoff_worker.handoff.resync import (
    HandoffSink,
    ResyncRequest,
    ResyncSummary,
    SweepBusyError,
    parse_moment,
    run_locked,
    scheduled_window,
)
from handoff_worker.hubspot.ratelimit import work_class
from handoff_worker.presentation import RECORD_SENTENCES
from handoff_worker.setaside import NotReplayableError, discard, list_set_aside, put_back
from handoff_worker.settings import Settings
from handoff_worker.state import redis_client
from handoff_worker.wiring import Wiring, build_wiring

EXIT_FAILED = 1
EXIT_BUSY = 3


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except HandoffError as exc:
        raise click.ClickException(str(exc)) from exc


class _ProgressLine:
    """A one-line progress report on stderr, redrawn in place; silent when stderr is not a tty."""

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty()
        self.started = time.monotonic()
        self.last_drawn = 0.0

    def __call__(self, summary: ResyncSummary) -> None:
        now = time.monotonic()
        if not self.enabled or now - self.last_drawn < 0.2:
            return
        self.last_drawn = now
        rate = summary.found / max(now - self.started, 1e-6)
        click.echo(
            f"\rscanned {summary.found:,}  queued {summary.queued:,}  "
            f"already done {summary.already_done:,}  ({rate:,.0f}/s)",
            err=True,
            nl=False,
        )

    def close(self) -> None:
        if self.enabled:
            click.echo("", err=True)


def _print_summary(
    summary: ResyncSummary, *, as_json: bool, inline: bool = False, named: bool = False
) -> None:
    if as_json:
        click.echo(json.dumps(summary.as_dict(), indent=2))
        return
    verb = "would hand off" if summary.dry_run else "handed off here" if inline else "queued"
    if named:
        click.echo(f"resync of the deals named{'  (dry run)' if summary.dry_run else ''}")
    else:
        click.echo(f"resync {summary.since} .. {summary.until}{'  (dry run)' if summary.dry_run else ''}")
    rows = [
        ("found", summary.found),
        ("  deals named" if named else "  lost deals", summary.deals_found),
        ("  unqualified contacts", summary.contacts_found),
        ("already done", summary.already_done),
        (verb, summary.queued),
        ("already queued or running", summary.already_queued),
        ("waiting for a reason", summary.waiting_for_reason),
        ("  reason now set, re-run", summary.waiting_requeued),
        ("  escalated", summary.escalated),
        ("  deleted in HubSpot, dropped", summary.waiting_cleared),
        ("recycled contacts checked", summary.recycled_checked),
        ("  sales has them back", summary.came_back),
        ("failed", summary.failed),
    ]
    for label, value in rows:
        click.echo(f"  {label:26} {value:>8,}")
    for error in summary.errors[:20]:
        click.echo(f"  ! {error}")
    if len(summary.errors) > 20:
        click.echo(f"  ! ... and {len(summary.errors) - 20} more")


@click.command("resync")
@click.option("--since", help="Window start: 24h, 7d, or a date (2026-11-01). Default: the watermark.")
@click.option("--until", "until_text", help="Window end: a date or a duration ago. Default: now.")
@click.option("--deal", "deal_ids", multiple=True, help="Hand off this deal id only (repeatable).")
@click.option("--inline", is_flag=True, help="Run handoffs in this process instead of queueing them.")
@click.option("--dry-run", is_flag=True, help="Report what would be done; write and queue nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--no-contacts", is_flag=True, help="Lost deals only; skip unqualified leads.")
@click.option("--wait", "wait_seconds", type=float, default=0.0, help="Wait this long for a running sweep.")
def resync_command(
    since: str | None,
    until_text: str | None,
    deal_ids: tuple[str, ...],
    inline: bool,
    dry_run: bool,
    as_json: bool,
    no_contacts: bool,
    wait_seconds: float,
) -> None:
    """Find lost deals and unqualified leads that webhooks missed, and hand them off.

    Without --since the sweep starts at the last successful sweep's watermark (minus the
    RESYNC_LOOKBACK_MINUTES overlap) and moves the watermark when it succeeds, like the scheduled
    sweep. Exit codes: 0 done, 1 something failed, 3 another sweep is running.
    """
    bad_ids = [deal_id for deal_id in deal_ids if not deal_id.isdigit()]
    if bad_ids:
        raise click.BadParameter(
            f"{', '.join(map(repr, bad_ids))} is not a deal id: HubSpot's deal ids are numbers "
            "(the record's URL ends with it), e.g. --deal 123",
            param_hint="--deal",
        )
    settings = _settings()
    now = datetime.now(UTC)
    try:
        wiring = build_wiring(settings)
        if since is None:
            start, end = scheduled_window(
                wiring.redis, now=now, lookback_minutes=settings.resync_lookback_minutes
            )
        else:
            start = parse_moment(since, now=now, option="--since")
            end = now
        if until_text is not None:
            end = parse_moment(until_text, now=now, option="--until")
        if start >= end:
            raise click.BadParameter(
                f"the window starts ({start:%Y-%m-%d %H:%M} UTC) at or after it ends "
                f"({end:%Y-%m-%d %H:%M} UTC): --since must be earlier than --until",
                param_hint="--since/--until",
            )
        request = ResyncRequest(
            since=start, until=end, deal_ids=deal_ids, include_contacts=not no_contacts, dry_run=dry_run
        )
        progress = _ProgressLine()
        # Bulk work: a share of the budget while live handoffs run, and none of the daily reserve.
        try:
            with work_class(WorkClass.BULK):
                summary = run_locked(
                    wiring.redis,
                    wiring.resync(_sink(wiring, inline=inline)),
                    request,
                    wait_seconds=wait_seconds,
                    advance_watermark=since is None and until_text is None and not deal_ids,
                    progress=progress,
                )
        finally:
            progress.close()
    except SweepBusyError as exc:
        click.echo(f"resync not started: {exc}", err=True)
        sys.exit(EXIT_BUSY)
    except HandoffError as exc:
        raise click.ClickException(str(exc)) from exc
    _print_summary(summary, as_json=as_json, inline=inline, named=bool(deal_ids))
    if not summary.ok:
        sys.exit(EXIT_FAILED)


def _sink(wiring: Wiring, *, inline: bool) -> HandoffSink:
    """Where the sweep's records go: handed off here, or queued for the workers like a webhook's."""
    if inline:
        return InlineSink(wiring.engine)
    from handoff_worker.beat import QueueingSink
    from handoff_worker.celery_app import create_celery

    return QueueingSink(create_celery(wiring.settings), wiring.redis)


# --------------------------------------------------------------------------- failures and replay


@click.command("failures")
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def failures_command(as_json: bool) -> None:
    """List handoffs that failed and wait in the dead-letter record, and queue messages set aside."""
    settings = _settings()
    client = redis_client(settings)
    failures = list_failures(client)
    messages = list_set_aside(client)
    if as_json:
        records = [asdict(f) for f in failures] + [{"kind": "message", **asdict(m)} for m in messages]
        click.echo(json.dumps(records, indent=2))
        return
    if not failures and not messages:
        click.echo("no failed handoff is waiting")
        return
    if failures:
        click.echo(f"{'record':20} {'first failed (UTC)':20} {'last failed (UTC)':20} {'tries':>5}  error")
    for failure in failures:
        click.echo(
            f"{failure.key:20} {_utc(failure.first_failed_at):20} {_utc(failure.last_failed_at):20} "
            f"{failure.attempts:>5}  {failure.error}"
        )
    if failures:
        click.echo(f"{len(failures)} failed handoff(s); run `handoff-worker replay --all` once fixed")
    if messages:
        click.echo(f"\n{'message set aside':38} {'queue':8} {'last (UTC)':20} {'times':>5}  task / why")
    for message in messages:
        task = message.task or "(not a task message)"
        click.echo(
            f"{message.message_id:38} {message.queue or '-':8} {_utc(message.last_at):20} "
            f"{message.times:>5}  {task}: {message.reason}"
        )
    if messages:
        click.echo(
            f"{len(messages)} message(s) set aside; `handoff-worker replay --message ID` queues one again, "
            "`--discard-message ID` drops it"
        )


def _utc(stamp: str) -> str:
    return datetime.fromisoformat(stamp).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


@click.command("replay")
@click.option("--all", "replay_all", is_flag=True, help="Replay every failed handoff.")
@click.option("--deal", "deal_ids", multiple=True, help="Replay this deal (repeatable).")
@click.option("--contact", "contact_ids", multiple=True, help="Replay this contact (repeatable).")
@click.option(
    "--message", "message_ids", multiple=True, help="Queue this set-aside message again (repeatable)."
)
@click.option(
    "--discard-message", "discard_ids", multiple=True, help="Drop this set-aside message (repeatable)."
)
def replay_command(
    replay_all: bool,
    deal_ids: tuple[str, ...],
    contact_ids: tuple[str, ...],
    message_ids: tuple[str, ...],
    discard_ids: tuple[str, ...],
) -> None:
    """Run failed handoffs again; keeps going past a failure and prints a tally.

    Set-aside queue messages (see `failures`) are queued again with --message, or by --all when they
    can be, and dropped with --discard-message. Exit code 1 when any replay failed (it stays in the
    dead-letter record).
    """
    if not (replay_all or deal_ids or contact_ids or message_ids or discard_ids):
        raise click.UsageError(
            "say what to replay: --all, or --deal ID / --contact ID / --message ID (repeatable), "
            "or --discard-message ID"
        )
    settings = _settings()
    if message_ids or discard_ids or replay_all:
        if not _replay_messages(redis_client(settings), message_ids, discard_ids, replay_all=replay_all):
            sys.exit(EXIT_FAILED)
        if not (replay_all or deal_ids or contact_ids):
            return
    try:
        wiring = build_wiring(settings)
    except HandoffError as exc:
        raise click.ClickException(str(exc)) from exc
    recorded = {f.key: f for f in list_failures(wiring.redis)}
    if replay_all:
        chosen = list(recorded.values())
    else:
        wanted = [f"deal:{d}" for d in deal_ids] + [f"contact:{c}" for c in contact_ids]
        unknown = [key for key in wanted if key not in recorded]
        for key in unknown:
            click.echo(f"{key} is not in the dead-letter record (see `handoff-worker failures`)", err=True)
        chosen = [recorded[key] for key in wanted if key in recorded]
    tally = replay_failures(wiring.engine, chosen)
    for line in tally.failed:
        click.echo(f"  ! {line}")
    line = f"replayed {tally.replayed}: handed off {tally.handed_off}, failed {len(tally.failed)}"
    if tally.other:
        line += "; " + ", ".join(
            f"{count} {RECORD_SENTENCES.get(outcome, outcome)}"
            for outcome, count in sorted(tally.other.items())
        )
    click.echo(line)
    if tally.failed:
        sys.exit(EXIT_FAILED)


def _replay_messages(
    client: redis.Redis, message_ids: tuple[str, ...], discard_ids: tuple[str, ...], *, replay_all: bool
) -> bool:
    """Queue set-aside messages again or drop them; False when any could not be."""
    recorded = {m.message_id: m for m in list_set_aside(client)}
    ok = True
    for message_id in (*message_ids, *discard_ids):
        if message_id not in recorded:
            click.echo(f"message {message_id} is not set aside (see `handoff-worker failures`)", err=True)
            ok = False
    for message_id in discard_ids:
        if message_id in recorded and discard(client, message_id):
            click.echo(f"message {message_id} discarded")
    chosen = [m for m in recorded.values() if m.replayable] if replay_all else []
    chosen += [recorded[i] for i in message_ids if i in recorded and recorded[i] not in chosen]
    for message in chosen:
        try:
            queue = put_back(client, message)
        except NotReplayableError as exc:
            click.echo(f"  ! {exc}", err=True)
            ok = False
            continue
        click.echo(f"message {message.message_id} queued again on {queue}")
    return ok


# --------------------------------------------------------------------------- report


def _check_writable(path: Path) -> None:
    """Before the report's reads (which take a while on a large account): a place it can be written."""
    folder = path.absolute().parent
    problem = None
    if not folder.is_dir():
        problem = f"the folder {folder} does not exist"
    elif not os.access(path if path.exists() else folder, os.W_OK):
        problem = f"{'it' if path.exists() else f'the folder {folder}'} is not writable"
    if problem:
        raise click.BadParameter(f"cannot write {path}: {problem}", param_hint="--output")


@click.command("report")
@click.option("--since", default="90d", show_default=True, help="Window start: 90d, 24h or a date.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(sorted(RENDERERS)),
    default="table",
    show_default=True,
    help="table for people, csv/json for tools, html for a self-contained page with charts.",
)
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write to this file instead.")
def report_command(since: str, output_format: str, output: str | None) -> None:
    """The closed loop: per reason, for lost deals and disqualified leads, how many people were
    recycled to marketing, came back to sales, and won, with the revenue, against the period before."""
    if output:
        _check_writable(Path(output))
    settings = _settings()
    now = datetime.now(UTC)
    try:
        start = parse_moment(since, now=now, option="--since")
        wiring = build_wiring(settings)
        report = closed_loop_report(wiring.redis, wiring.gateway, wiring.rules, since=start, until=now)
    except HandoffError as exc:
        raise click.ClickException(str(exc)) from exc
    text = RENDERERS[output_format](report)
    if output:
        Path(output).write_text(text, encoding="utf-8")
        click.echo(f"report written to {output}", err=True)
    else:
        click.echo(text, nl=False)
