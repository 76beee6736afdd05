"""`handoff-worker demo`: the whole handoff story in one process, on embedded defaults.

A sandbox portal stands in for HubSpot, an in-memory Redis stand-in and Celery's in-memory transport
stand in for Redis, and the real intake, tasks, engine and SDK gateway run between them over HTTP.
Sales reps lose deals through the sandbox's control API; the sandbox sends signed webhooks to the
intake, which queues work for an in-process worker; the worker writes back to the sandbox.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

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
    ]


def _fill_in_reason_once_the_task_is_there(control: Any) -> None:
    _wait_for(lambda: control.objects("tasks"), "the owner task for 'Globex pilot'")
    control.rep_update("deals", "2002", {"closed_lost_reason": "Not Ready"})


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

        celery_app.conf.update(broker_url="memory://", broker_transport=None, broker_transport_options={})
        worker = celery_app.Worker(
            pool="solo",
            concurrency=1,
            queues=[HANDOFF_QUEUE],
            loglevel="WARNING",
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
        )


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


def format_result(result: DemoResult) -> str:
    contacts = {c["id"]: c["properties"] for c in result.contacts}
    by_record: dict[tuple[str, str], dict[str, Any]] = {}
    for audit in result.audits:  # newest first: keep the latest outcome per record
        by_record.setdefault((audit.get("kind", ""), str(audit.get("object_id", ""))), audit)

    lines = ["", "What happened", "============="]
    for (kind, object_id), audit in sorted(by_record.items(), key=lambda kv: kv[0][1]):
        reason = audit.get("reason") or "-"
        lines.append(
            f"{kind} {object_id}: {audit.get('outcome')}  (reason: {reason}; "
            f"{audit.get('api_calls', '?')} API calls)"
        )
        for contact_id, outcome in sorted((audit.get("contacts") or {}).items()):
            props = contacts.get(contact_id, {})
            name = f"{props.get('firstname', '')} {props.get('lastname', '')}".strip() or contact_id
            why = f" — {outcome.get('why')}" if outcome.get("why") else ""
            lines.append(
                f"    {name:12} {outcome.get('outcome', ''):10} lifecycle now "
                f"{props.get('lifecyclestage') or '(empty)'}{why}"
            )
    lines += ["", "Owner tasks created"]
    for task in result.tasks:
        lines.append(
            f"    {task['properties'].get('hs_task_subject')} "
            f"(owner {task['properties'].get('hubspot_owner_id')})"
        )

    def names(ids: list[str]) -> str:
        return ", ".join(
            f"{contacts.get(i, {}).get('firstname', '')} {contacts.get(i, {}).get('lastname', '')}".strip()
            or i
            for i in ids
        )

    lines += ["", "Nurture enrollments"]
    for workflow_id, detail in sorted(result.enrollments.items()):
        if isinstance(detail, dict) and detail.get("contactIds"):
            lines.append(
                f"    workflow {workflow_id} {detail.get('name', '')!r}: {names(detail['contactIds'])}"
            )
    for list_id, detail in sorted(result.list_memberships.items()):
        if isinstance(detail, dict) and detail.get("memberIds"):
            lines.append(f"    list {list_id} {detail.get('name', '')!r}: {names(detail['memberIds'])}")
    property_nurtured = [c["id"] for c in result.contacts if c["properties"].get("nurture_track")]
    if property_nurtured:
        lines.append(f"    property nurture: {names(property_nurtured)}")
    lines += ["", f"HubSpot API calls made by the worker: {result.api_calls}"]
    return "\n".join(lines)


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
    logging.basicConfig(level=logging.INFO if verbose else logging.ERROR, format="%(message)s")
    if not verbose:
        for noisy in ("celery", "kombu", "handoff_worker", "werkzeug"):
            logging.getLogger(noisy).setLevel(logging.CRITICAL)
    from handoff_worker.errors import HandoffError

    try:
        result = run_demo(config_path, echo=click.echo)
    except HandoffError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(format_result(result))
