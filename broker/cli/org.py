"""`gatehouse org`: manage organisations through the API (admin)."""

from __future__ import annotations

import argparse
from typing import Any

from broker.cli.common import api_parser, print_json
from broker.client import ApiClient


def cmd_org_create(api: ApiClient, args: argparse.Namespace) -> int:
    print_json(api.call("organizations", "create", {"name": args.name}))
    return 0


def register(commands: Any) -> None:
    org = commands.add_parser("org", help="manage organisations (admin)").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    created = api_parser(
        org, "create", "create an organisation; prints its credentials", cmd_org_create
    )
    created.add_argument("--name", required=True)
