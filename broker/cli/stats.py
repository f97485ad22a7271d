"""`gatehouse stats`: what the running broker has counted."""

from __future__ import annotations

from typing import Any

import click

from broker.cli.common import CONTEXT, print_json, with_api


@click.command(
    context_settings=CONTEXT,
    help="What the running broker has counted: connections, refusals, messages routed,"
    " refused and dropped, rows written behind (admin).",
)
@with_api
def stats(api: Any) -> None:
    print_json(api.call("broker", "stats"))
