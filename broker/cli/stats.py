"""`gatehouse stats`: what the running broker has counted."""

from __future__ import annotations

import argparse
from typing import Any

from broker.cli.common import api_parser, print_json
from broker.client import ApiClient


def cmd_stats(api: ApiClient, args: argparse.Namespace) -> int:
    print_json(api.call("broker", "stats"))
    return 0


def register(commands: Any) -> None:
    api_parser(
        commands,
        "stats",
        "what the running broker has counted: connections, refusals, messages routed,"
        " refused and dropped, rows written behind (admin)",
        cmd_stats,
    )
