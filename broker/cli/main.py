"""The `gatehouse` command: a thin dispatcher over the command groups.

Each group lives in its own module and is imported only when it is invoked (or when
shell completion needs it), so `gatehouse device list --help` loads click and the
device module, not the server. `load` and `sim` belong to `simulators.cli`.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Any

import click

from broker.cli.common import CONTEXT

# name -> (module, attribute, one-line description shown by `gatehouse --help`)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "serve": (
        "broker.cli.serve",
        "serve",
        "Run gatehouse (MQTT broker, registry and REST API) on a data directory.",
    ),
    "product": ("broker.cli.product", "product", "Manage products."),
    "device": ("broker.cli.device", "device", "Manage devices."),
    "model": ("broker.cli.model", "model", "Manage thing models."),
    "org": ("broker.cli.org", "org", "Manage organisations (admin)."),
    "command": ("broker.cli.command", "command", "Send commands to devices and follow them."),
    "cert": ("broker.cli.cert", "cert", "Device certificates for two-way TLS products."),
    "stats": ("broker.cli.stats", "stats", "What the running broker has counted (admin)."),
    "db": (
        "broker.cli.db",
        "db",
        "The registry's database: copy it to another (SQLite, PostgreSQL).",
    ),
    "load": (
        "simulators.cli",
        "load",
        "Put simulated devices on the wire at a rate and report; merge and plot reports.",
    ),
    "sim": ("simulators.cli", "sim", "Run one simulated device or gateway."),
    "completion": ("broker.cli.completion", "completion", "Print a shell completion script."),
}

EPILOG = """\
API commands read the organisation's credentials from GATEHOUSE_ACCESS_KEY,
GATEHOUSE_ACCESS_SECRET and GATEHOUSE_ORG_ID, or else from the credentials.json that
`gatehouse serve` wrote into --data-dir. GATEHOUSE_URL sets the API address for every
command that talks to a server, load and sim included.
"""


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = COMMANDS.get(cmd_name)
        if found is None:
            return None
        module, attribute, _ = found
        command: click.Command = getattr(importlib.import_module(module), attribute)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # The descriptions are here, so `gatehouse --help` imports no command.
        rows = [(name, help_text) for name, (_, _, help_text) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    click.echo(f"gatehouse {version()}")
    ctx.exit()


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("gatehouse")
    except PackageNotFoundError:  # run from a checkout that is not installed
        return "unknown"


@click.group(
    cls=LazyGroup,
    context_settings=CONTEXT,
    epilog=EPILOG,
    help="A local emulator of an IoT platform's device-connection layer.",
)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_version,
    help="Print gatehouse's version and exit.",
)
def cli() -> None:
    pass


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        cli.main(
            args=args,
            prog_name="gatehouse",
            complete_var="_GATEHOUSE_COMPLETE",
            standalone_mode=True,
        )
    except SystemExit as exc:
        return _exit_code(exc.code)
    return 0


def _exit_code(code: Any) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)  # SystemExit("message"): say it, as Python would
    return 1
