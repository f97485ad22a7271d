"""`gatehouse db copy SRC DST`: move a registry between databases (SQLite <-> PostgreSQL)."""

from __future__ import annotations

import asyncio
import sys

import click

from broker.cli.common import CONTEXT


@click.group(context_settings=CONTEXT, help="The registry's database.")
def db() -> None:
    pass


@db.command(
    "copy",
    context_settings=CONTEXT,
    help="Copy a whole registry (organisations, products, devices, topology, commands,"
    " certificates, the message log, latest values, everything) from SRC to the empty"
    " DST, e.g. sqlite:///var/gatehouse/registry.db to postgresql://gatehouse@db/gatehouse"
    " (or back). Both are migrated to this gatehouse's schema first. Stop the gatehouse"
    " that serves SRC before copying.",
)
@click.argument("src")
@click.argument("dst")
def copy(src: str, dst: str) -> None:
    from registry import RegistryError

    try:
        summary = asyncio.run(_copy(src, dst))
    except RegistryError as exc:  # a bad URL, an unreachable database, a full target
        print(f"gatehouse: {exc.msg}", file=sys.stderr)
        raise SystemExit(2) from None
    click.echo(summary)


async def _copy(src: str, dst: str) -> str:
    from registry.store.copy import copy_registry
    from registry.store.urls import store_for

    source, target = store_for(src), store_for(dst)
    await source.open()
    try:
        await target.open()
        try:
            report = await copy_registry(source, target)
        finally:
            await target.close()
    finally:
        await source.close()
    return f"{report.summary()}: {source.location} -> {target.location}"
