"""`gatehouse command`: send commands to devices and follow them."""

from __future__ import annotations

import argparse
import base64
from typing import Any

from broker.cli.common import api_parser, json_arg, print_json, table
from broker.client import ApiClient

SLEEPING_WAIT = 21_100.0  # the longest a synchronous command can be held (eDRX's most)


def _send_command(
    api: ApiClient, args: argparse.Namespace, action: str, body: Any, **q: Any
) -> int:
    # A synchronous command holds the call until the device answers or times out.
    wait = SLEEPING_WAIT if not args.pending_ttl else 60.0
    query = {"timeout": args.timeout, "pendingTtl": args.pending_ttl, **q}
    data = api.call(
        "commands", action, body, wait, productKey=args.product, deviceKey=args.key, **query
    )
    print_json(data)
    return 0 if data["state"] in ("succeeded", "pending", "sent") else 1


def cmd_command_invoke(api: ApiClient, args: argparse.Namespace) -> int:
    body = {"inputData": args.input}
    return _send_command(api, args, "invokeService", body, serviceId=args.service)


def cmd_command_set(api: ApiClient, args: argparse.Namespace) -> int:
    return _send_command(api, args, "setMeasurepoint", {"measurepoints": args.points})


def cmd_command_raw(api: ApiClient, args: argparse.Namespace) -> int:
    try:
        payload = bytes.fromhex(args.hex)
    except ValueError:
        raise SystemExit(f"gatehouse: --hex {args.hex!r} is not hexadecimal") from None
    body = {"payloadBase64": base64.b64encode(payload).decode()}
    return _send_command(api, args, "sendRaw", body)


def cmd_command_show(api: ApiClient, args: argparse.Namespace) -> int:
    print_json(api.call("commands", "get", commandId=args.command_id))
    return 0


def cmd_command_list(api: ApiClient, args: argparse.Namespace) -> int:
    rows = api.call("commands", "list", productKey=args.product, deviceKey=args.key)
    header = ("COMMAND", "KIND", "STATE", "CODE", "CREATED")
    table(
        [
            (
                c["commandId"],
                c["serviceId"] or c["kind"],
                c["state"],
                c["replyCode"] or "",
                c["createdAt"],
            )
            for c in rows
        ],
        header,
    )
    return 0


def cmd_command_cancel(api: ApiClient, args: argparse.Namespace) -> int:
    print_json(api.call("commands", "cancel", commandId=args.command_id))
    return 0


def register(commands: Any) -> None:
    command = commands.add_parser(
        "command", help="send commands to devices and follow them"
    ).add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, help_text, func in (
        (
            "invoke",
            "invoke a service (waits for the reply unless --pending-ttl)",
            cmd_command_invoke,
        ),
        ("set", "set measurepoints (waits for the reply unless --pending-ttl)", cmd_command_set),
        ("raw", "send raw bytes to a Custom product's device", cmd_command_raw),
    ):
        sender = api_parser(command, name, help_text, func)
        sender.add_argument("--product", required=True, help="ProductKey")
        sender.add_argument("--key", required=True, help="DeviceKey")
        sender.add_argument(
            "--timeout",
            type=float,
            help="seconds to wait for the device's reply (default:"
            " 30, or by the product's power-saving mode)",
        )
        sender.add_argument(
            "--pending-ttl",
            type=float,
            default=0,
            help="hold the command up to this many"
            " seconds for a device that is not reachable, and return at once (default 0: wait)",
        )
        if name == "invoke":
            sender.add_argument("--service", required=True, help="the service's identifier")
            sender.add_argument(
                "--input", type=json_arg, default={}, help="inputData as JSON (or @FILE)"
            )
        elif name == "set":
            sender.add_argument(
                "--points", type=json_arg, required=True, help="e.g. '{\"target\": 21}'"
            )
        else:
            sender.add_argument("--hex", required=True, help="the bytes, in hexadecimal")
    shown = api_parser(command, "show", "show a command and its state", cmd_command_show)
    shown.add_argument("command_id", metavar="COMMAND_ID")
    listed = api_parser(command, "list", "a device's latest commands", cmd_command_list)
    listed.add_argument("--product", required=True)
    listed.add_argument("--key", required=True)
    cancelled = api_parser(command, "cancel", "cancel a pending command", cmd_command_cancel)
    cancelled.add_argument("command_id", metavar="COMMAND_ID")
