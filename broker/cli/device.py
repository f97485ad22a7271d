"""`gatehouse device`: manage devices through the API."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from broker.cli.common import api_parser, print_json, table
from broker.client import ApiClient, ApiError
from broker.protocol.credentials_file import write_credentials


def cmd_device_create(api: ApiClient, args: argparse.Namespace) -> int:
    if args.count < 1:
        raise ApiError(0, 0, "--count must be 1 or more")
    if args.key and args.count > 1:
        raise ApiError(0, 0, "--key names one device; leave it out with --count")
    base = {"productKey": args.product, "timezone": args.timezone}
    if args.count == 1:
        body = {**base, "deviceName": args.name or args.key or "device"}
        if args.key:
            body["deviceKey"] = args.key
        if args.secret:
            body["deviceSecret"] = args.secret
        created = [api.call("devices", "create", body)]
    else:
        prefix = args.name or "device"
        bodies = [{**base, "deviceName": f"{prefix}-{i}"} for i in range(1, args.count + 1)]
        created = api.call("devices", "batchCreate", {"deviceList": bodies})
    if args.export:
        write_credentials(args.export, created)
        print(f"created {len(created)} devices; credentials in {args.export}")
    elif len(created) == 1:
        print_json(created[0])
    else:
        print(f"created {len(created)} devices (use --export FILE for their credentials)")
    return 0


def cmd_device_list(api: ApiClient, args: argparse.Namespace) -> int:
    devices = api.pages("devices", "list", productKey=args.product)
    rows = [(d["deviceKey"], d["deviceName"]["defaultValue"], d["state"]) for d in devices]
    table(rows, ("DEVICE KEY", "NAME", "STATE"))
    return 0


def cmd_device_show(api: ApiClient, args: argparse.Namespace) -> int:
    print_json(api.call("devices", "get", productKey=args.product, deviceKey=args.key))
    return 0


def cmd_device_block_show(api: ApiClient, args: argparse.Namespace) -> int:
    data = api.call("devices", "getConnectBlock", productKey=args.product, deviceKey=args.key)
    print_json(data)
    return 0


def cmd_device_block_clear(api: ApiClient, args: argparse.Namespace) -> int:
    data = api.call("devices", "clearConnectBlock", productKey=args.product, deviceKey=args.key)
    print(f"{args.product}/{args.key}: {data['cleared']} block(s) lifted")
    return 0


def cmd_device_export(api: ApiClient, args: argparse.Namespace) -> int:
    rows = api.pages("devices", "exportCredentials", productKey=args.product)
    write_credentials(args.file, rows)
    print(f"exported {len(rows)} devices' credentials to {args.file}")
    return 0


def register(commands: Any) -> None:
    device = commands.add_parser("device", help="manage devices").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    create = api_parser(device, "create", "create one device or --count of them", cmd_device_create)
    create.add_argument("--product", required=True, help="ProductKey")
    create.add_argument("--count", type=int, default=1)
    create.add_argument("--key", help="a fixed DeviceKey (one device)")
    create.add_argument("--secret", help="a fixed DeviceSecret (one device)")
    create.add_argument("--name", help="name (with --count, a prefix)")
    create.add_argument("--timezone", default="+00:00")
    create.add_argument("--export", type=Path, help="write the credentials to FILE (.csv or .json)")
    listing = api_parser(device, "list", "list a product's devices", cmd_device_list)
    listing.add_argument("--product", required=True)
    show = api_parser(device, "show", "show a device", cmd_device_show)
    show.add_argument("--product", required=True)
    show.add_argument("--key", required=True)
    block = device.add_parser(
        "block", help="see or lift what keeps a device from connecting"
    ).add_subparsers(dest="block_action", metavar="ACTION", required=True)
    for name, help_text, func in (
        ("show", "a device's connect blocks and recent wrong signs", cmd_device_block_show),
        ("clear", "lift a device's connect blocks at once", cmd_device_block_clear),
    ):
        blocked = api_parser(block, name, help_text, func)
        blocked.add_argument("--product", required=True, help="ProductKey")
        blocked.add_argument("--key", required=True, help="DeviceKey")
    export = api_parser(device, "export", "export a product's credentials", cmd_device_export)
    export.add_argument("--product", required=True)
    export.add_argument("file", type=Path, metavar="FILE", help=".csv or .json")
