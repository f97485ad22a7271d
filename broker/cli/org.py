"""`gatehouse org`: manage organisations through the API (admin)."""

from __future__ import annotations

from typing import Any

import click

from broker.cli.common import CONTEXT, print_json, with_api


@click.group(context_settings=CONTEXT, help="Manage organisations (admin).")
def org() -> None:
    pass


@org.command(help="Create an organisation; prints its credentials.")
@click.option("--name", required=True, help="the organisation's name")
@with_api
def create(api: Any, name: str) -> None:
    print_json(api.call("organizations", "create", {"name": name}))
