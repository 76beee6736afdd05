"""`handoff-worker sandbox`: serve the HubSpot sandbox on a local port."""

from __future__ import annotations

import json
from pathlib import Path

import click

from handoff_worker.sandbox.limits import parse_rate
from handoff_worker.sandbox.testing import DEFAULT_SEED, SandboxServer
from handoff_worker.sandbox.webhooks import DEFAULT_CLIENT_SECRET


def _check_rate(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        parse_rate(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    return value


def _check_secret(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not value.strip():
        raise click.BadParameter(
            "is empty: webhooks signed with an empty secret prove nothing. Give the worker's "
            f"HUBSPOT_CLIENT_SECRET, or leave the option out for {DEFAULT_CLIENT_SECRET!r}"
        )
    return value


@click.command("sandbox")
@click.option(
    "--port", type=int, default=8090, show_default=True, help="Port to listen on (0 picks a free one)."
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option(
    "--seed",
    "seed_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSON seed file (format in docs/sandbox.md). Default: the bundled demo portal.",
)
@click.option(
    "--webhook-url",
    help="Where to POST signed webhook events, e.g. http://127.0.0.1:5000/webhooks/hubspot "
    "(5000: the web process's PORT under honcho and `handoff-worker rehearse`).",
)
@click.option(
    "--client-secret",
    default=DEFAULT_CLIENT_SECRET,
    show_default=True,
    envvar="SANDBOX_CLIENT_SECRET",
    callback=_check_secret,
    help="Secret that signs webhooks; must equal the worker's HUBSPOT_CLIENT_SECRET.",
)
@click.option(
    "--app-id", type=int, default=424242, show_default=True, help="App id sent in events and as sourceId."
)
@click.option(
    "--access-token",
    envvar="SANDBOX_ACCESS_TOKEN",
    help="If set, API calls must carry exactly this bearer token; otherwise any token is accepted.",
)
@click.option(
    "--rate-limit",
    default="100/10s",
    show_default=True,
    callback=_check_rate,
    help="Burst limit per account as REQUESTS/WINDOW (e.g. 190/10s).",
)
@click.option(
    "--retry-delays",
    help="Comma-separated seconds between webhook retries (up to 9), e.g. 1,2,5. "
    "Default: HubSpot-like, about 15 h in all.",
)
def sandbox_command(
    port: int,
    host: str,
    seed_file: Path | None,
    webhook_url: str | None,
    client_secret: str,
    app_id: int,
    access_token: str | None,
    rate_limit: str,
    retry_delays: str | None,
) -> None:
    """Run the HubSpot sandbox: HubSpot's CRM, automation and lists API paths, rate limits and
    quirks, plus signed webhooks, all in memory. Point the SDK at it with
    HubSpot(access_token="any", host="http://HOST:PORT"). Control it under /_sandbox/
    (see docs/sandbox.md)."""
    seed = json.loads(seed_file.read_text()) if seed_file else DEFAULT_SEED
    delays = [float(d) for d in retry_delays.split(",")] if retry_delays else None
    extra = {"retry_delays": delays} if delays else {}
    server = SandboxServer.start(
        seed=seed,
        client_secret=client_secret,
        app_id=app_id,
        access_token=access_token,
        rate_limit=rate_limit,
        webhook_url=webhook_url,
        host=host,
        port=port,
        **extra,
    )
    click.echo(f"HubSpot sandbox listening on {server.url} (control API: {server.url}/_sandbox/)")
    if webhook_url:
        click.echo(f"Webhooks go to {webhook_url}")
    try:
        server.wait()
    except KeyboardInterrupt:
        click.echo("Stopping the sandbox.")
    finally:
        server.stop()
