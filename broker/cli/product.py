"""`gatehouse product`: manage products through the API."""

from __future__ import annotations

import argparse
from typing import Any

from broker.cli.common import api_parser, json_arg, print_json, table
from broker.client import ApiClient


def cmd_product_create(api: ApiClient, args: argparse.Namespace) -> int:
    body: dict[str, Any] = dict(args.body or {})
    given = {
        "productName": args.name,
        "modelId": args.model,
        "deviceType": args.type,
        "dataFormat": args.format,
        "networkMethod": args.network,
        "productKey": args.key,
        "productDesc": args.desc,
    }
    body.update({k: v for k, v in given.items() if v is not None})
    if args.bidirectional_auth:
        body["biDirectionalAuth"] = True
    if args.dynamic_activation:
        body["dynamicActivateEnabled"] = True
    print(api.call("products", "create", body))
    return 0


def cmd_product_list(api: ApiClient, args: argparse.Namespace) -> int:
    products = api.pages("products", "list")
    rows = [
        (
            p["productKey"],
            p["productName"]["defaultValue"],
            p["deviceType"],
            p["dataFormat"],
            p["modelId"],
        )
        for p in products
    ]
    table(rows, ("PRODUCT KEY", "NAME", "TYPE", "FORMAT", "MODEL"))
    return 0


def cmd_product_show(api: ApiClient, args: argparse.Namespace) -> int:
    product = api.call("products", "get", productKey=args.product_key)
    product["statistics"] = api.call("statistics", "get", productKey=args.product_key)
    print_json(product)
    return 0


def register(commands: Any) -> None:
    product = commands.add_parser("product", help="manage products").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    create = api_parser(
        product, "create", "create a product; prints its ProductKey", cmd_product_create
    )
    create.add_argument("--name", help="product name")
    create.add_argument("--model", help="modelId of its thing model")
    create.add_argument("--type", choices=("direct", "gateway", "subdevice"))
    create.add_argument("--format", choices=("Json", "Custom"))
    create.add_argument("--network", help="2G, 3G, 4G, 5G, Wi-Fi, NB-IoT or Bluetooth")
    create.add_argument("--key", help="a fixed ProductKey (default: generated)")
    create.add_argument("--desc", help="description")
    create.add_argument("--bidirectional-auth", action="store_true", help="require two-way TLS")
    create.add_argument("--dynamic-activation", action="store_true")
    create.add_argument(
        "--body", type=json_arg, help="more settings as JSON (or @FILE), EnOS field names"
    )
    api_parser(product, "list", "list products", cmd_product_list)
    show = api_parser(product, "show", "show a product and its statistics", cmd_product_show)
    show.add_argument("product_key", metavar="PRODUCT_KEY")
