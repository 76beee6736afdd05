"""The `handoff-worker` command. Subcommands live in `commands/` (the demo's and the sandbox's beside
their code) and are imported only when used, so `--help` stays fast and one broken area cannot take
the others down."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys

import click

# name -> (module, attribute, one-line help shown by `handoff-worker --help`)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "demo": (
        "handoff_worker.demo",
        "demo_command",
        "Run the whole handoff story on embedded defaults (no Redis, no HubSpot account).",
    ),
    "sandbox": (
        "handoff_worker.sandbox.commands",
        "sandbox_command",
        "Run the HubSpot sandbox: a local stand-in for HubSpot's API and webhooks.",
    ),
    "rehearse": (
        "handoff_worker.rehearse",
        "rehearse_command",
        "Rehearse locally: a HubSpot sandbox plus the Procfile's processes, wired to each other.",
    ),
    "config": (
        "handoff_worker.commands.config",
        "config_group",
        "Check the nurture YAML, locally or against HubSpot; create marker properties.",
    ),
    "resync": (
        "handoff_worker.commands.ops",
        "resync_command",
        "Find lost deals and unqualified leads that webhooks missed, and hand them off.",
    ),
    "failures": (
        "handoff_worker.commands.ops",
        "failures_command",
        "List handoffs that failed and wait in the dead-letter record.",
    ),
    "replay": (
        "handoff_worker.commands.ops",
        "replay_command",
        "Run failed handoffs again; keeps going past a failure and prints a tally.",
    ),
    "report": (
        "handoff_worker.commands.ops",
        "report_command",
        "Per reason: deals lost, contacts recycled, skipped, enrolled, and come back to sales.",
    ),
    "journey": (
        "handoff_worker.commands.journey",
        "journey_command",
        "Show where contacts stand: with sales, recycled into a nurture, or come back.",
    ),
    "status": (
        "handoff_worker.commands.status",
        "status_command",
        "What is queued, running, waiting, failed and done; budget in use; ETA. Exit codes for checks.",
    ),
    "settings": (
        "handoff_worker.cli",
        "settings_command",
        "Show the settings in force (secrets masked) and whether they are valid.",
    ),
}


# Commands that bring their own Redis stand-in and HubSpot: REDIS_URL and .env mean nothing to them.
SELF_CONTAINED = frozenset({"demo", "sandbox"})


class LazyGroup(click.Group):
    """Loads subcommands when used, and is the one error boundary of every subcommand: whatever
    stops one (Redis down, a bad setting, a missing module) is said in one line naming the setting
    and what to do, with a non-zero exit; `--debug` shows the traceback instead."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["handoff.argv"] = list(args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            if ctx.params.get("debug"):
                raise
            from handoff_worker.cli_errors import explain

            command = " ".join(["handoff-worker", *self._command_words(ctx)])
            click.echo(f"{command}: {explain(exc)}", err=True)
            ctx.exit(1)

    def _command_words(self, ctx: click.Context) -> list[str]:
        """The (sub)command names as typed, e.g. `config check`, to start an error line with."""
        words: list[str] = []
        group: click.Group = self
        for arg in ctx.meta.get("handoff.argv", []):
            command = None if arg.startswith("-") else group.get_command(ctx, arg)
            if command is None:
                continue
            words.append(arg)
            if not isinstance(command, click.Group):
                break
            group = command
        return words

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(n for n, (module, _, _) in COMMANDS.items() if _importable(module))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, attribute, _ = COMMANDS[cmd_name]
        command = getattr(importlib.import_module(module), attribute)
        assert isinstance(command, click.Command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(n, COMMANDS[n][2]) for n in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _importable(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="handoff-worker")
@click.option("--debug", is_flag=True, help="On an error, show the full traceback instead of one line.")
@click.option(
    "--json-logs",
    is_flag=True,
    help="Write log lines as JSON at LOG_LEVEL, with the fields the services use (also: LOG_FORMAT=json).",
)
@click.pass_context
def main(ctx: click.Context, debug: bool, json_logs: bool) -> None:
    """Hand lost HubSpot deals and unqualified leads back to marketing nurture.

    Settings come from the environment and `.env` in the current folder (see `.env.example`). When
    the environment does not set REDIS_URL, each command first says on stderr where it comes from.
    """
    if ctx.invoked_subcommand in SELF_CONTAINED or _asks_for_help(ctx):
        return
    _log_to_stderr(ctx, debug, json_logs)
    from handoff_worker.errors import HandoffError
    from handoff_worker.settings import Settings, mask_url, redis_url_origin

    origin = redis_url_origin()
    if origin is None:
        return
    try:
        redis_url = mask_url(Settings.from_env().redis_url)
    except HandoffError:
        return  # the command itself says what is wrong with the settings
    click.echo(f"using Redis at {redis_url} ({origin})", err=True)


def _log_to_stderr(ctx: click.Context, debug: bool, json_logs: bool) -> None:
    """Errors only, unless --debug: what a command gets past is its own business (its summary says
    what failed), and what stops it is said once, by the error boundary. With --json-logs (or
    LOG_FORMAT=json) the lines are for a log collector: JSON, from LOG_LEVEL up."""
    from handoff_worker.logs import JsonFormatter, set_process_role

    level = logging.DEBUG if debug else logging.ERROR
    formatter: logging.Formatter = logging.Formatter("%(message)s")
    log_format, log_level = _log_settings()
    if json_logs or log_format == "json":
        set_process_role("cli")
        formatter = JsonFormatter()
        level = logging.DEBUG if debug else logging.getLevelName(log_level)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    level_before = root.level
    root.addHandler(handler)
    root.setLevel(level)

    def restore() -> None:
        root.removeHandler(handler)
        root.setLevel(level_before)

    ctx.call_on_close(restore)


def _log_settings() -> tuple[str, str]:
    """LOG_FORMAT and LOG_LEVEL; when the settings are invalid the command itself says so."""
    from handoff_worker.errors import HandoffError
    from handoff_worker.settings import Settings

    try:
        settings = Settings.from_env()
    except HandoffError:
        return "", "INFO"
    return settings.log_format, settings.log_level


def _asks_for_help(ctx: click.Context) -> bool:
    help_options = set(ctx.help_option_names)
    return any(arg in help_options for arg in ctx.meta.get("handoff.argv", []))


@click.command("settings")
@click.option("--json", "as_json", is_flag=True, help="Print the settings as one JSON object.")
def settings_command(as_json: bool) -> None:
    """Print every setting in force by its variable, secrets masked. Exits 1 when one is invalid
    (or still the placeholder from .env.example)."""
    import json

    from handoff_worker.settings import Settings

    shown = Settings.from_env().by_variable()
    if as_json:
        click.echo(json.dumps(shown, indent=2))
        return
    for name, value in shown.items():
        click.echo(f"{name:28} {value}")
