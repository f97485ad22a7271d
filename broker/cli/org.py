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


@org.command("create-key", help="Create an extra access key; prints it with its secret.")
@click.option(
    "--read-only/--full-access",
    default=True,
    help="read only (list and get; the default) or full access",
)
@click.option("--desc", default="", help="what the key is for")
@with_api
def create_key(api: Any, read_only: bool, desc: str) -> None:
    body = {"permission": "read" if read_only else "full", "description": desc}
    print_json(api.call("access-keys", "create", body))


@org.command("keys", help="List the organisation's extra access keys.")
@with_api
def keys(api: Any) -> None:
    print_json(api.call("access-keys", "list"))
