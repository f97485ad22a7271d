"""`gatehouse command`: send commands to devices and follow them."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import click

from broker.cli.common import CONTEXT, iso_time, json_option, print_json, table, with_api

SLEEPING_WAIT = 21_100.0  # the longest a synchronous command can be held (eDRX's most)
DONE = ("succeeded", "pending", "sent")


@click.group(context_settings=CONTEXT, help="Send commands to devices and follow them.")
def command() -> None:
    pass


def _sender(func: Callable[..., Any]) -> Callable[..., Any]:
    """The options every command that sends takes."""
    for option in (
        click.option(
            "--pending-ttl",
            type=click.FloatRange(min=0),
            default=0.0,
            help="hold the command up to this many seconds for a device that is not"
            " reachable, and return at once (0: wait for the reply)",
        ),
        click.option(
            "--timeout",
            type=click.FloatRange(min=0, min_open=True),
            help="seconds to wait for the device's reply  [default: 30, or by the"
            " product's power-saving mode]",
        ),
        click.option("--key", required=True, help="DeviceKey"),
        click.option("--product", required=True, help="ProductKey"),
    ):
        func = option(func)
    return func


def _send(
    api: Any,
    action: str,
    body: Any,
    where: dict[str, Any],
    **query: Any,
) -> int:
    # A synchronous command holds the call until the device answers or times out.
    wait = SLEEPING_WAIT if not where["pending_ttl"] else 60.0
    data = api.call(
        "commands",
        action,
        body,
        wait,
        productKey=where["product"],
        deviceKey=where["key"],
        timeout=where["timeout"],
        pendingTtl=where["pending_ttl"],
        **query,
    )
    print_json(data)
    return 0 if data["state"] in DONE else 1


@command.command(help="Invoke a service (waits for the reply unless --pending-ttl).")
@_sender
@click.option("--service", required=True, help="the service's identifier")
@click.option(
    "--input",
    "input_data",
    metavar="JSON|@FILE",
    callback=json_option,
    default="{}",
    help="inputData as JSON (or @FILE)",
)
@with_api
def invoke(api: Any, service: str, input_data: Any, **where: Any) -> int:
    return _send(api, "invokeService", {"inputData": input_data}, where, serviceId=service)


@command.command("set", help="Set measurepoints (waits for the reply unless --pending-ttl).")
@_sender
@click.option(
    "--points",
    metavar="JSON|@FILE",
    callback=json_option,
    required=True,
    help="""e.g. '{"target": 21}' (or @FILE)""",
)
@with_api
def set_points(api: Any, points: Any, **where: Any) -> int:
    return _send(api, "setMeasurepoint", {"measurepoints": points}, where)


def _hexadecimal(ctx: click.Context, param: click.Parameter, value: str) -> bytes:
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not hexadecimal") from None


@command.command(help="Send raw bytes to a Custom product's device.")
@_sender
@click.option("--hex", "payload", required=True, callback=_hexadecimal, help="the bytes, in hex")
@with_api
def raw(api: Any, payload: bytes, **where: Any) -> int:
    body = {"payloadBase64": base64.b64encode(payload).decode()}
    return _send(api, "sendRaw", body, where)


@command.command(help="Show a command and its state.")
@click.argument("command_id")
@with_api
def show(api: Any, command_id: str) -> None:
    print_json(api.call("commands", "get", commandId=command_id))


@command.command("list", help="A device's latest commands.")
@click.option("--product", required=True, help="ProductKey")
@click.option("--key", required=True, help="DeviceKey")
@with_api
def list_commands(api: Any, product: str, key: str) -> None:
    rows = api.call("commands", "list", productKey=product, deviceKey=key)
    table(
        [
            (
                c["commandId"],
                c["serviceId"] or c["kind"],
                c["state"],
                c["replyCode"] or "",
                iso_time(c["createdAt"]),
            )
            for c in rows
        ],
        ("COMMAND", "KIND", "STATE", "CODE", "CREATED"),
    )


@command.command(help="Cancel a pending command.")
@click.argument("command_id")
@with_api
def cancel(api: Any, command_id: str) -> None:
    print_json(api.call("commands", "cancel", commandId=command_id))
