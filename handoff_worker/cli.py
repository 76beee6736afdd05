"""The `handoff-worker` command. Subcommands live in `commands/` (the demo's and the sandbox's beside
their code) and are imported only when used, so `--help` stays fast and one broken area cannot take
the others down."""

from __future__ import annotations

import importlib
import importlib.util

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
    "settings": (
        "handoff_worker.cli",
        "settings_command",
        "Show the settings in force (secrets masked) and whether they are valid.",
    ),
}


class LazyGroup(click.Group):
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
def main() -> None:
    """Hand lost HubSpot deals and unqualified leads back to marketing nurture.

    Settings come from the environment and `.env` (see `.env.example`).
    """


@click.command("settings")
def settings_command() -> None:
    """Print every setting in force, secrets masked. Exits 2 when a setting is invalid."""
    from handoff_worker.errors import SettingsError
    from handoff_worker.settings import Settings

    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from exc
    for name, value in settings.redacted().items():
        click.echo(f"{name:28} {value}")
