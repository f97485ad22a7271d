"""The `gatehouse` command: a thin dispatcher over the subcommands.

`serve` runs the service; `product`, `device`, `model` and `org` call a running
service's REST API. Later subcommands owned by `simulators` are loaded only when asked.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from broker.cli import cert, command, device, model, org, product, serve, stats
from broker.client import ApiClient, ApiError

EPILOG = """\
API commands read the organisation's credentials from GATEHOUSE_ACCESS_KEY,
GATEHOUSE_ACCESS_SECRET and GATEHOUSE_ORG_ID, or else from the credentials.json that
`gatehouse serve` wrote into --data-dir. GATEHOUSE_URL sets the API address.
"""
SIMULATOR_COMMANDS = {
    "load": "put simulated devices on the wire at a rate and report (see gatehouse load --help)",
    "sim": "run one simulated device or gateway (see gatehouse sim device --help)",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gatehouse",
        description="A local emulator of an IoT platform's device-connection layer.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in (serve, product, device, model, org, command):
        group.register(commands)
    for name, help_text in SIMULATOR_COMMANDS.items():
        commands.add_parser(name, help=help_text, add_help=False)
    for group in (cert, stats):
        group.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SIMULATOR_COMMANDS:
        # Owned by `simulators`, loaded only when asked.
        from simulators.cli import main as simulators_main

        return simulators_main(argv)
    args = build_parser().parse_args(argv)
    if hasattr(args, "func"):
        result: int = args.func(args)
        return result
    try:
        api = ApiClient.from_env(args.url, args.data_dir)
        try:
            result = args.api_func(api, args)
        finally:
            api.close()
    except ApiError as exc:
        print(f"gatehouse: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"gatehouse: {exc}", file=sys.stderr)
        return 1
    return result
