"""`handoff-worker rehearse`: the Procfile's processes against a local HubSpot sandbox, wired together.

The sandbox runs in this process; every process of the Procfile (web, worker, bulk, sweeper, beat)
runs as it says, each as a child process in its own process group, with the settings that point
them at the sandbox and the sandbox's webhooks at them. Everything else (REDIS_URL above all)
comes from the environment and `.env` as usual. Before the processes start, the shipped nurture
YAML is checked against the sandbox and the marker properties are created, as
`config setup-properties` does against HubSpot.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import click

from handoff_worker.sandbox.webhooks import DEFAULT_CLIENT_SECRET
from handoff_worker.settings import Settings

# The sandbox's own defaults (as `handoff-worker sandbox` starts it), so a rehearsal run by hand
# (the sandbox, then `honcho start`) uses the same .env as this command. Published, not credentials.
REHEARSAL_CLIENT_SECRET = DEFAULT_CLIENT_SECRET
REHEARSAL_ACCESS_TOKEN = "rehearsal-access-token"  # noqa: S105
REHEARSAL_APP_ID = 424242
DEFAULT_WEB_PORT = 5000  # what `honcho start` gives the web process
DEFAULT_SANDBOX_PORT = 8090
# Seconds between a sandbox webhook's retries: a rehearsal shows a retry within a minute, not a day.
REHEARSAL_RETRY_DELAYS = (2.0, 5.0, 10.0, 30.0, 60.0, 60.0, 60.0, 60.0, 60.0)
STOP_GRACE_SECONDS = 25.0  # gunicorn's graceful_timeout is 20 s

_PROCFILE_LINE = re.compile(r"^([A-Za-z0-9_-]+):\s*(.+)$")


@dataclass(frozen=True)
class Rehearsal:
    """The wiring between the sandbox and the processes."""

    web_port: int
    sandbox_port: int
    host: str = "127.0.0.1"

    @property
    def sandbox_url(self) -> str:
        return f"http://{self.host}:{self.sandbox_port}"

    @property
    def webhook_url(self) -> str:
        return f"http://{self.host}:{self.web_port}/webhooks/hubspot"

    def environment(self, base: Mapping[str, str]) -> dict[str, str]:
        """`base` with the settings that point the processes at the sandbox."""
        return {
            **base,
            "PORT": str(self.web_port),
            "HUBSPOT_BASE_URL": self.sandbox_url,
            "HUBSPOT_ACCESS_TOKEN": REHEARSAL_ACCESS_TOKEN,
            "HUBSPOT_CLIENT_SECRET": REHEARSAL_CLIENT_SECRET,
            "HUBSPOT_APP_ID": str(REHEARSAL_APP_ID),
            "WEBHOOK_PUBLIC_URL": self.webhook_url,
            "PYTHONUNBUFFERED": "1",
            # The Procfile's gunicorn and celery from the installation running this command, even
            # when its virtual environment is not activated.
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), base.get("PATH", os.defpath)]),
        }


def read_procfile(path: Path) -> dict[str, str]:
    """Process name -> command line, as honcho and Heroku read a Procfile."""
    processes: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _PROCFILE_LINE.match(line)
        if match is None:
            raise click.ClickException(f"{path}, line {number}: expected 'name: command', got {line!r}")
        processes[match.group(1)] = match.group(2)
    return processes


def prepare_sandbox(settings: Settings, echo: Callable[[str], None] = click.echo) -> None:
    """Create the marker properties and check the YAML against the sandbox, as an operator does
    against HubSpot (`config setup-properties`, `config check --remote`): a rehearsal whose every
    handoff dead-letters teaches nothing."""
    from handoff_worker.commands.config import remote_problems, setup_marker_properties
    from handoff_worker.hubspot.gateway import build_gateway
    from handoff_worker.nurture_config import load_rules
    from handoff_worker.state import redis_client

    config_path = settings.handoff_config
    gateway = build_gateway(settings, redis_client(settings))
    rules = load_rules(config_path, named_by="HANDOFF_CONFIG")
    for line in setup_marker_properties(rules, gateway, dry_run=False):
        echo(f"sandbox   {line}")
    problems = remote_problems(rules, gateway)
    if problems:
        raise click.ClickException(
            f"{config_path} does not fit the sandbox in {len(problems)} place(s): " + "; ".join(problems)
        )
    echo(f"sandbox   {config_path}: every reason, workflow, list and property found")


class Children:
    """The Procfile's processes, each in its own process group so stopping one stops its children
    (gunicorn's and Celery's workers) too."""

    def __init__(self) -> None:
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, command: str, env: Mapping[str, str]) -> None:
        process = subprocess.Popen(  # noqa: S602  # a Procfile line is a shell command by definition
            command,
            shell=True,
            env=dict(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes[name] = process
        width = max(len(n) for n in [*self.processes, "sandbox"])
        threading.Thread(
            target=_relay, args=(name.ljust(width), process), name=f"relay-{name}", daemon=True
        ).start()

    def first_exited(self) -> tuple[str, int] | None:
        for name, process in self.processes.items():
            code = process.poll()
            if code is not None:
                return name, code
        return None

    def stop(self) -> None:
        """SIGTERM to every group, as honcho does; whoever is still there after the grace period
        gets SIGKILL. Waits for the whole group, not just the shell: Celery's warm shutdown and
        gunicorn's graceful one outlive the `sh -c` that started them."""
        for process in self.processes.values():
            _signal_group(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for process in self.processes.values():
            while _group_alive(process) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _group_alive(process):
                _signal_group(process.pid, signal.SIGKILL)
            process.wait()


def _group_alive(process: subprocess.Popen[bytes]) -> bool:
    process.poll()  # reap the shell, so a finished group does not linger as a zombie
    try:
        os.killpg(process.pid, 0)
    except ProcessLookupError:
        return False
    return True


def _signal_group(group: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signum)


def _relay(prefix: str, process: subprocess.Popen[bytes]) -> None:
    assert process.stdout is not None
    for raw in process.stdout:
        sys.stdout.write(f"{prefix} | {raw.decode(errors='replace')}")
        sys.stdout.flush()


@click.command("rehearse")
@click.option(
    "--port",
    type=int,
    default=DEFAULT_WEB_PORT,
    show_default=True,
    help="The web process's PORT, where the sandbox sends its webhooks.",
)
@click.option("--sandbox-port", type=int, default=DEFAULT_SANDBOX_PORT, show_default=True)
@click.option(
    "--procfile",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=Path("Procfile"),
    show_default=True,
    help="The processes to run.",
)
def rehearse_command(port: int, sandbox_port: int, procfile: Path) -> None:
    """Rehearse on this machine: a HubSpot sandbox (default seed) plus every process of the
    Procfile, wired to each other. Needs Redis at REDIS_URL. Lose a deal through the
    sandbox's control API (see the README) and watch it handed off. Ctrl-C stops everything."""
    from handoff_worker.sandbox.testing import SandboxServer
    from handoff_worker.state import redis_client

    rehearsal = Rehearsal(web_port=port, sandbox_port=sandbox_port)
    env = rehearsal.environment(os.environ)
    # What the processes will read (.env, the environment, the wiring), checked before anything starts.
    settings = Settings.from_env(env)
    # Every process needs it: said in one line now, not by four processes failing in turn.
    redis_client(settings).ping()
    processes = read_procfile(procfile)
    sandbox = SandboxServer.start(
        client_secret=REHEARSAL_CLIENT_SECRET,
        app_id=REHEARSAL_APP_ID,
        access_token=REHEARSAL_ACCESS_TOKEN,
        webhook_url=rehearsal.webhook_url,
        retry_delays=REHEARSAL_RETRY_DELAYS,
        port=sandbox_port,
    )
    children = Children()
    stopping = threading.Event()

    def stop_on_signal(signum: int, frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop_on_signal)
    signal.signal(signal.SIGINT, stop_on_signal)
    exit_code = 0
    try:
        click.echo(f"sandbox   HubSpot sandbox on {sandbox.url} (control API {sandbox.url}/_sandbox/)")
        click.echo(f"sandbox   webhooks go to {rehearsal.webhook_url}, app id {REHEARSAL_APP_ID}")
        prepare_sandbox(settings)
        for name, command in processes.items():
            children.start(name, command, env)
        click.echo(f"rehearse  started {', '.join(processes)}; Ctrl-C stops them all")
        while not stopping.wait(0.5):
            exited = children.first_exited()
            if exited is not None:
                name, code = exited
                click.echo(f"rehearse  {name} stopped (exit {code}): stopping the others", err=True)
                exit_code = 1
                break
    finally:
        click.echo("rehearse  stopping")
        children.stop()
        sandbox.stop()
    if exit_code:
        raise SystemExit(exit_code)
