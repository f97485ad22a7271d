"""`gatehouse product`: manage products through the API."""

from __future__ import annotations

from typing import Any

import click

from broker.cli.common import CONTEXT, json_option, print_json, table, with_api


@click.group(context_settings=CONTEXT, help="Manage products.")
def product() -> None:
    pass


# EnOS's mandatory create fields that the CLI fills in when they are not given.
PRODUCT_TYPES = {"direct": "Device", "subdevice": "Device", "gateway": "Gateway"}


@product.command(
    help="Create a product; prints its ProductKey. EnOS's mandatory fields are filled in:"
    " productType from --type (Device), dataFormat Json, biDirectionalAuth false."
)
@click.option("--name", help="product name")
@click.option("--model", help="modelId of its thing model (a standard-TSL --category has one)")
@click.option("--category", help="a catalogue category (gatehouse product categories)")
@click.option("--type", "device_type", type=click.Choice(("direct", "gateway", "subdevice")))
@click.option("--format", "data_format", type=click.Choice(("Json", "Custom")))
@click.option("--network", help="2G, 3G, 4G, 5G, Wi-Fi, NB-IoT or Bluetooth")
@click.option("--key", help="a fixed ProductKey (default: generated)")
@click.option("--desc", help="description")
@click.option("--bidirectional-auth", is_flag=True, help="require two-way TLS")
@click.option("--dynamic-activation", is_flag=True, help="devices sign in with the ProductSecret")
@click.option(
    "--body",
    metavar="JSON|@FILE",
    callback=json_option,
    help="more settings as JSON (or @FILE), EnOS field names",
)
@with_api
def create(
    api: Any,
    name: str | None,
    model: str | None,
    category: str | None,
    device_type: str | None,
    data_format: str | None,
    network: str | None,
    key: str | None,
    desc: str | None,
    bidirectional_auth: bool,
    dynamic_activation: bool,
    body: Any,
) -> None:
    settings: dict[str, Any] = dict(body or {})
    given = {
        "productName": name,
        "modelId": model,
        "deviceType": device_type,
        "dataFormat": data_format,
        "networkMethod": network,
        "productKey": key,
        "productDesc": desc,
        "category": category,
    }
    settings.update({k: v for k, v in given.items() if v is not None})
    if bidirectional_auth:
        settings["biDirectionalAuth"] = True
    chosen = settings.get("deviceType") or "direct"
    settings.setdefault("productType", PRODUCT_TYPES.get(chosen, "Device"))
    settings.setdefault("dataFormat", "Json")
    settings.setdefault("biDirectionalAuth", False)
    if "productName" not in settings:
        raise click.UsageError("--name is required (EnOS's productName)")
    if "modelId" not in settings and "category" not in settings:
        raise click.UsageError("--model (or a standard-TSL --category) is required")
    if dynamic_activation:
        settings["dynamicActivateEnabled"] = True
    # EnOS's create requires orgId in the query: asked of the API when not configured.
    org = {} if api.creds.org_id else {"orgId": api.call("organizations", "get")["orgId"]}
    click.echo(api.call("products", "create", settings, **org))


@product.command("list", help="List products.")
@with_api
def list_products(api: Any) -> None:
    rows = [
        (
            p["productKey"],
            p["productName"]["defaultValue"],
            p["deviceType"],
            p["dataFormat"],
            p["modelId"],
        )
        for p in api.pages("products", "list")
    ]
    table(rows, ("PRODUCT KEY", "NAME", "TYPE", "FORMAT", "MODEL"))


@product.command(help="Show a product and its statistics.")
@click.argument("product_key")
@with_api
def show(api: Any, product_key: str) -> None:
    found = api.call("products", "get", productKey=product_key)
    found["statistics"] = api.call("statistics", "get", productKey=product_key)
    print_json(found)


@product.command(help="List the catalogue of product categories (product templates).")
@with_api
def categories(api: Any) -> None:
    rows = [
        (
            c["categoryId"],
            c["kind"],
            c.get("deviceType") or "any",
            c.get("modelId") or "",
            c["name"],
        )
        for c in api.call("categories", "list")
    ]
    table(rows, ("CATEGORY", "KIND", "TYPE", "MODEL", "NAME"))
