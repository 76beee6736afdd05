"""Ops commands: `resync`, `failures`, `replay`, `report`. Registered lazily by `handoff_worker.cli`.

This module is wiring: it reads settings, builds the gateway, the rules and the engine, and hands
them to the use cases in `resync`, `report` and the engine's dead-letter record.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import click
import redis

from handoff_worker.domain.nurture import NurtureRules
from handoff_worker.errors import HandoffError
from handoff_worker.handoff.resync import (
    HandoffSink,
    Resync,
    ResyncRequest,
    ResyncSummary,
    SweepBusyError,
    parse_moment,
    run_locked,
    scheduled_window,
)
from handoff_worker.hubspot.protocol import HubSpotGateway
from handoff_worker.settings import Settings
from handoff_worker.state import redis_client

EXIT_FAILED = 1
EXIT_BUSY = 3


@dataclass
class Wiring:
    settings: Settings
    redis: redis.Redis
    gateway: HubSpotGateway
    rules: NurtureRules
    resync: Resync


def build_resync(settings: Settings, *, inline: bool) -> Wiring:
    """Everything a sweep needs, from settings. `inline` runs handoffs in this process."""
    from handoff_worker.handoff import engine_adapter
    from handoff_worker.hubspot.gateway import build_gateway
    from handoff_worker.nurture_config import load_rules

    client = redis_client(settings)
    gateway = build_gateway(settings, client)
    rules = load_rules(settings.handoff_config)
    sink: HandoffSink
    if inline:
        sink = engine_adapter.InlineSink(settings, client, gateway, rules)
    else:
        from handoff_worker.beat import CelerySink
        from handoff_worker.celery_app import create_celery

        sink = CelerySink(create_celery(settings))
    resync = Resync(
        gateway,
        rules,
        sink,
        done=engine_adapter.LedgerDoneCheck(client),
        waiting=engine_adapter.WaitingRevisitor(settings, client, gateway, rules),
    )
    return Wiring(settings, client, gateway, rules, resync)


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


def _print_summary(summary: ResyncSummary, *, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(summary.as_dict(), indent=2))
        return
    verb = "would queue" if summary.dry_run else "queued"
    click.echo(f"resync {summary.since} .. {summary.until}{'  (dry run)' if summary.dry_run else ''}")
    rows = [
        ("found", summary.found),
        ("  lost deals", summary.deals_found),
        ("  unqualified contacts", summary.contacts_found),
        ("already done", summary.already_done),
        (verb, summary.queued),
        ("waiting for a reason", summary.waiting_for_reason),
        ("  reason now set, re-run", summary.waiting_requeued),
        ("  escalated", summary.escalated),
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
    settings = _settings()
    now = datetime.now(UTC)
    try:
        wiring = build_resync(settings, inline=inline)
        if since is None:
            start, end = scheduled_window(
                wiring.redis, now=now, lookback_minutes=settings.resync_lookback_minutes
            )
        else:
            start = parse_moment(since, now=now, option="--since")
            end = now
        if until_text is not None:
            end = parse_moment(until_text, now=now, option="--until")
        request = ResyncRequest(
            since=start, until=end, deal_ids=deal_ids, include_contacts=not no_contacts, dry_run=dry_run
        )
        progress = _ProgressLine()
        try:
            summary = run_locked(
                wiring.redis,
                wiring.resync,
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
    _print_summary(summary, as_json=as_json)
    if not summary.ok:
        sys.exit(EXIT_FAILED)


def _unused(_: Any) -> None:  # placeholder removed once replay/report land
    return None
