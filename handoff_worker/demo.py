"""`handoff-worker demo`: the whole handoff story in one process, on embedded defaults.

A sandbox portal stands in for HubSpot, an in-memory Redis stand-in and Celery's in-memory transport
stand in for Redis, and the real intake, tasks, engine and SDK gateway run between them over HTTP.
Sales reps lose deals through the sandbox's control API; the sandbox sends signed webhooks to the
intake, which queues work for an in-process worker; the worker writes back to the sandbox.
"""

from __future__ import annotations

import logging
import secrets
import sys
import threading
import time
import warnings
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from celery.exceptions import SecurityWarning

if TYPE_CHECKING:
    from handoff_worker.presentation import Names

DEMO_APP_ID = 424242

# What the sales reps do, in order. Each is (what a person would read, the action).
Step = tuple[str, Callable[[Any], object]]


@dataclass(frozen=True)
class DemoResult:
    deals: list[dict[str, Any]]
    contacts: list[dict[str, Any]]
    tasks: list[dict[str, Any]]
    enrollments: dict[str, Any]
    list_memberships: dict[str, Any]
    audits: list[dict[str, Any]]
    api_calls: int
    owners: dict[str, str] = field(default_factory=dict)  # owner id -> name


def _steps() -> list[Step]:
    return [
        (
            "Jordan opens a new deal with Ria Shah (Umbrella), who is also on the partner deal",
            lambda c: c.associate(
                c.rep_create(
                    "deals",
                    {
                        "dealname": "Umbrella direct",
                        "pipeline": "default",
                        "dealstage": "appointmentscheduled",
                        "hubspot_owner_id": "7002",
                    },
                )["id"],
                "3005",
            ),
        ),
        (
            "Avery loses 'Acme expansion' (Dana Lee, Sam Ortiz): Pricing",
            lambda c: c.lose_deal("2001", "Pricing"),
        ),
        (
            "Jordan loses 'Globex pilot' (Kim Park) and forgets the reason",
            lambda c: c.lose_deal("2002", None),
        ),
        (
            "Avery loses 'Initech renewal' (Lee Chan, a customer) to a Competitor",
            lambda c: c.lose_deal("2003", "Competitor", stage="renewal_churned"),
        ),
        (
            "Jordan moves 'Umbrella via partner' to a stage labelled 'Closed lost' at 80% (not lost)",
            lambda c: c.rep_update("deals", "2004", {"dealstage": "partner_handover"}),
        ),
        (
            "Jordan loses 'Umbrella via partner' for real: Feature Missing",
            lambda c: c.lose_deal("2004", "Feature Missing", stage="partner_lost"),
        ),
        (
            "Jordan disqualifies the lead Max Berg: Not Interested",
            lambda c: c.rep_update(
                "contacts",
                "3006",
                {"hs_lead_status": "UNQUALIFIED", "handoff_unqualified_reason": "Not Interested"},
            ),
        ),
        (
            "Jordan sees the task and fills in the reason on 'Globex pilot': Not Ready",
            _fill_in_reason_once_the_task_is_there,
        ),
        (
            "Avery opens a new deal with Dana Lee, who is in the Pricing nurture: it stops for her",
            _new_deal_for_dana_once_she_is_nurtured,
        ),
    ]


def _fill_in_reason_once_the_task_is_there(control: Any) -> None:
    _wait_for(lambda: control.objects("tasks"), "the owner task for 'Globex pilot'")
    control.rep_update("deals", "2002", {"closed_lost_reason": "Not Ready"})


def _new_deal_for_dana_once_she_is_nurtured(control: Any) -> None:
    _wait_for(
        lambda: control.object("contacts", "3001")["properties"].get("handoff_recycled_at"),
        "Dana Lee to be recycled",
    )
    deal = control.rep_create(
        "deals",
        {"dealname": "Acme second try", "pipeline": "default", "dealstage": "qualifiedtobuy"},
    )
    control.associate(deal["id"], "3001")


def _wait_for(check: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"the demo waited {timeout:g} s for {what}: run it with --verbose to see why")
        time.sleep(0.1)


def run_demo(config_path: Path, *, echo: Callable[[str], None] = print, pause: float = 0.3) -> DemoResult:
    """Run the story and return what the sandbox ended up with. Raises if it does not converge."""
    import fakeredis
    from werkzeug.serving import make_server

    from handoff_worker.celery_app import HANDOFF_QUEUE
    from handoff_worker.celery_app import app as celery_app
    from handoff_worker.handoff.audit import recent_audits
    from handoff_worker.intake.app import create_app
    from handoff_worker.nurture_config import RulesStore
    from handoff_worker.sandbox.testing import SandboxServer
    from handoff_worker.settings import Settings
    from handoff_worker.wiring import build_wiring, install_wiring

    client_secret = secrets.token_hex(16)
    access_token = "demo-" + secrets.token_hex(8)
    store = RulesStore(config_path)
    rules = store.current()
    fake_redis = fakeredis.FakeRedis(decode_responses=True)

    with ExitStack() as stack:
        sandbox = SandboxServer.start(
            client_secret=client_secret,
            app_id=DEMO_APP_ID,
            access_token=access_token,
            retry_delays=(0.2, 0.5, 1.0),
        )
        stack.callback(sandbox.stop)
        settings = Settings.from_env(
            {
                "HUBSPOT_ACCESS_TOKEN": access_token,
                "HUBSPOT_CLIENT_SECRET": client_secret,
                "HUBSPOT_APP_ID": str(DEMO_APP_ID),
                "HUBSPOT_BASE_URL": sandbox.url,
                "HANDOFF_CONFIG": str(config_path),
                "REDIS_URL": "redis://in-process/0",
            },
            dotenv_path=None,
        )
        wired = build_wiring(settings, fake_redis)
        gateway = wired.gateway
        install_wiring(wired)
        stack.callback(install_wiring, None)

        # The demo's logging stays as `demo_command` set it (quiet, or --verbose): Celery would
        # otherwise replace the root logger's set-up with its own when the worker starts.
        celery_app.conf.update(
            broker_url="memory://",
            broker_transport=None,
            broker_transport_options={},
            worker_hijack_root_logger=False,
        )
        worker = celery_app.Worker(
            pool="solo",
            concurrency=1,
            queues=[HANDOFF_QUEUE],
            loglevel=logging.getLevelName(logging.getLogger().level),
            quiet=True,
            redirect_stdouts=False,
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
        )
        threading.Thread(target=worker.start, name="demo-worker", daemon=True).start()
        stack.callback(worker.stop)

        intake = make_server(
            "127.0.0.1",
            0,
            create_app(settings, rules=rules, redis_client=fake_redis, celery_app=celery_app),
            threaded=True,
        )
        threading.Thread(target=intake.serve_forever, name="demo-intake", daemon=True).start()
        stack.callback(intake.shutdown)
        intake_url = f"http://127.0.0.1:{intake.server_port}/webhooks/hubspot"
        sandbox.control.configure(webhook_url=intake_url)

        echo(f"HubSpot sandbox  {sandbox.url}")
        echo(f"webhook intake   {intake_url}")
        echo(f"nurture rules    {config_path} ({len(rules.reasons)} reasons)\n")
        for text, action in _steps():
            echo(f"- {text}")
            action(sandbox.control)
            time.sleep(pause)
        _settle(sandbox, fake_redis)

        control = sandbox.control
        deals = control.objects("deals")
        contacts = control.objects("contacts")
        return DemoResult(
            deals=deals,
            contacts=contacts,
            tasks=control.objects("tasks"),
            enrollments=control.enrollments(),
            list_memberships=control.list_memberships(),
            audits=recent_audits(fake_redis, 1000),
            api_calls=gateway.calls_made,
            owners=_owner_names(sandbox.url, access_token),
        )


def _owner_names(sandbox_url: str, access_token: str) -> dict[str, str]:
    """Owner id -> name, read as any HubSpot client reads owners."""
    import requests

    answer = requests.get(
        f"{sandbox_url}/crm/v3/owners", headers={"Authorization": f"Bearer {access_token}"}, timeout=10
    )
    answer.raise_for_status()
    return {
        str(o["id"]): f"{o.get('firstName', '')} {o.get('lastName', '')}".strip()
        for o in answer.json().get("results", [])
    }


def _settle(sandbox: Any, fake_redis: Any, *, quiet_seconds: float = 4.0, timeout: float = 90.0) -> None:
    """Wait until every webhook is delivered, nothing is queued, and no handoff has finished for
    `quiet_seconds` (longer than the worker's 3 s wait before retrying a record another run holds)."""
    from handoff_worker.domain.models import RecordKind
    from handoff_worker.handoff.audit import recent_audits
    from handoff_worker.pending import pending_key

    deadline = time.monotonic() + timeout
    last_count, quiet_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        sandbox.control.wait_for_webhooks(timeout=max(1.0, deadline - time.monotonic()))
        count = len(recent_audits(fake_redis, 10_000))
        pending = any(next(fake_redis.scan_iter(pending_key(kind, "*")), None) for kind in RecordKind)
        if pending or count != last_count:
            last_count, quiet_since = count, time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_seconds:
            return
        time.sleep(0.2)
    raise RuntimeError("the demo did not settle within 90 s: run it with --verbose to see why")


def demo_names(result: DemoResult) -> Names:
    """Deal, contact and owner names as the sandbox holds them, for the summary."""
    from handoff_worker.presentation import Names

    def person(props: dict[str, Any]) -> str:
        return f"{props.get('firstname', '')} {props.get('lastname', '')}".strip()

    return Names(
        deals={d["id"]: d["properties"].get("dealname", "") for d in result.deals},
        contacts={c["id"]: person(c["properties"]) for c in result.contacts},
        owners=result.owners,
    )


def format_result(result: DemoResult) -> str:
    from handoff_worker.presentation import record_lines

    names = demo_names(result)
    contacts = {c["id"]: c["properties"] for c in result.contacts}
    lines = ["", "What happened", "============="]
    for audit in latest_audits(result):
        lines += record_lines(audit, names)
    lines += ["", "Owner tasks created"]
    for task in result.tasks:
        owner = names.owner(str(task["properties"].get("hubspot_owner_id")))
        lines.append(f"    for {owner}: {task['properties'].get('hs_task_subject')}")
        lines.append(f"        {task['properties'].get('hs_task_body')}")

    def listed(ids: list[str]) -> str:
        return ", ".join(names.contact(i) for i in ids)

    lines += ["", "Nurture enrollments"]
    for workflow_id, detail in sorted(result.enrollments.items()):
        if isinstance(detail, dict) and detail.get("contactIds"):
            lines.append(f"    workflow {detail.get('name', workflow_id)}: {listed(detail['contactIds'])}")
    for list_id, detail in sorted(result.list_memberships.items()):
        if isinstance(detail, dict) and detail.get("memberIds"):
            lines.append(f"    list {detail.get('name', list_id)}: {listed(detail['memberIds'])}")
    property_nurtured = [c["id"] for c in result.contacts if c["properties"].get("nurture_track")]
    if property_nurtured:
        tracks = {contacts[i]["nurture_track"] for i in property_nurtured}
        lines.append(f"    nurture track {', '.join(sorted(tracks))}: {listed(property_nurtured)}")
    lines += ["", f"HubSpot API calls made by the worker: {result.api_calls}"]
    return "\n".join(lines)


def latest_audits(result: DemoResult) -> list[dict[str, Any]]:
    """The latest run of each record, in id order: what the record ended as."""
    by_record: dict[tuple[str, str], dict[str, Any]] = {}
    for audit in result.audits:  # newest first
        by_record.setdefault((str(audit.get("kind", "")), str(audit.get("object_id", ""))), audit)
    return [by_record[key] for key in sorted(by_record, key=lambda k: (k[1], k[0]))]


def _show_logs(verbose: bool) -> logging.Handler:
    """--verbose: every log line of ours and of the libraries at INFO, on stderr; otherwise none
    (what went wrong is in the summary)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO if verbose else logging.ERROR)
    for noisy in ("celery", "kombu", "handoff_worker", "werkzeug"):
        logging.getLogger(noisy).setLevel(logging.NOTSET if verbose else logging.CRITICAL)
    return handler


@click.command("demo")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=Path("config/nurture.yaml"),
    show_default=True,
    help="The nurture YAML to use.",
)
@click.option("--verbose", is_flag=True, help="Show the worker's and intake's log lines.")
def demo_command(config_path: Path, verbose: bool) -> None:
    """Run the whole handoff story on embedded defaults: no Redis server, no HubSpot account.

    Starts a HubSpot sandbox, the webhook intake and a worker in this process; sales reps lose deals
    (one without a reason, filled in a moment later; one to a Competitor; one whose contact has
    another open deal) and disqualify a lead; then prints what happened to each deal and contact,
    and the API calls spent.
    """
    from handoff_worker.errors import HandoffError
    from handoff_worker.presentation import handoff_failed

    handler = _show_logs(verbose)
    # Celery warns when a worker runs as root because a worker that unpickles messages could be
    # made to run code; the demo's worker takes JSON from an in-process queue only.
    warnings.filterwarnings("ignore", category=SecurityWarning)
    try:
        result = run_demo(config_path, echo=click.echo)
    except HandoffError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        logging.getLogger().removeHandler(handler)
    click.echo(format_result(result))
    failed = [audit for audit in latest_audits(result) if handoff_failed(audit)]
    if failed:
        raise click.ClickException(
            f"{len(failed)} handoff(s) failed (above): run the demo with --verbose to see every step"
        )
