"""`gatehouse device`: manage devices through the API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from broker.cli.common import CONTEXT, print_json, table, with_api

PRODUCT = click.option("--product", required=True, help="ProductKey")
DEVICE = click.option("--key", required=True, help="DeviceKey")


@click.group(context_settings=CONTEXT, help="Manage devices.")
def device() -> None:
    pass


@device.command(help="Create one device, or --count of them.")
@PRODUCT
@click.option("--count", type=click.IntRange(1, 10_000), default=1, help="devices to create")
@click.option("--key", help="a fixed DeviceKey (one device)")
@click.option("--secret", help="a fixed DeviceSecret (one device)")
@click.option("--name", help="name (with --count, a prefix)")
@click.option("--timezone", default="+00:00", help="the devices' timezone")
@click.option(
    "--export",
    type=click.Path(dir_okay=False, path_type=Path),
    help="write the credentials to FILE (.csv or .json)",
)
@with_api
def create(
    api: Any,
    product: str,
    count: int,
    key: str | None,
    secret: str | None,
    name: str | None,
    timezone: str,
    export: Path | None,
) -> None:
    from broker.protocol.credentials_file import write_credentials

    if key and count > 1:
        raise click.UsageError("--key names one device; leave it out with --count")
    base = {"productKey": product, "timezone": timezone}
    if count == 1:
        body = {**base, "deviceName": name or key or "device"}
        if key:
            body["deviceKey"] = key
        if secret:
            body["deviceSecret"] = secret
        created = [api.call("devices", "create", body)]
    else:
        prefix = name or "device"
        bodies = [{**base, "deviceName": f"{prefix}-{i}"} for i in range(1, count + 1)]
        created = api.call("devices", "batchCreate", {"deviceList": bodies})
    if export:
        write_credentials(export, created)
        click.echo(f"created {len(created)} devices; credentials in {export}")
    elif len(created) == 1:
        print_json(created[0])
    else:
        click.echo(f"created {len(created)} devices (use --export FILE for their credentials)")


@device.command("list", help="List a product's devices.")
@PRODUCT
@with_api
def list_devices(api: Any, product: str) -> None:
    devices = api.pages("devices", "list", productKey=product)
    rows = [(d["deviceKey"], d["deviceName"]["defaultValue"], d["state"]) for d in devices]
    table(rows, ("DEVICE KEY", "NAME", "STATE"))


@device.command(help="Show a device.")
@PRODUCT
@DEVICE
@with_api
def show(api: Any, product: str, key: str) -> None:
    print_json(api.call("devices", "get", productKey=product, deviceKey=key))


@device.group(context_settings=CONTEXT, help="See or lift what keeps a device from connecting.")
def block() -> None:
    pass


@block.command("show", help="A device's connect blocks and recent wrong signs.")
@PRODUCT
@DEVICE
@with_api
def block_show(api: Any, product: str, key: str) -> None:
    print_json(api.call("devices", "getConnectBlock", productKey=product, deviceKey=key))


@block.command("clear", help="Lift a device's connect blocks at once.")
@PRODUCT
@DEVICE
@with_api
def block_clear(api: Any, product: str, key: str) -> None:
    data = api.call("devices", "clearConnectBlock", productKey=product, deviceKey=key)
    click.echo(f"{product}/{key}: {data['cleared']} block(s) lifted")


@device.command(
    help="Send bytes to one of a device's custom topics (/PK/KEY/user/...), as Alibaba's Pub"
    " does: TOPIC is the whole topic or what follows /PK/KEY/ (e.g. user/get); the message"
    " is the --hex, the --text or the contents of --file."
)
@PRODUCT
@DEVICE
@click.argument("topic")
@click.option("--hex", "hex_payload", help="the message as hex digits")
@click.option("--text", help="the message as UTF-8 text")
@click.option(
    "--file",
    "from_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="the message as the file's bytes",
)
@click.option("--qos", type=click.IntRange(0, 1), default=0, help="the delivery's QoS")
@with_api
def publish(
    api: Any,
    product: str,
    key: str,
    topic: str,
    hex_payload: str | None,
    text: str | None,
    from_file: Path | None,
    qos: int,
) -> None:
    import base64

    given = [v for v in (hex_payload, text, from_file) if v is not None]
    if len(given) != 1:
        raise click.UsageError("give the message once: --hex, --text or --file")
    if hex_payload is not None:
        try:
            payload = bytes.fromhex(hex_payload)
        except ValueError:
            raise click.BadParameter("not hex digits", param_hint="--hex") from None
    elif text is not None:
        payload = text.encode()
    else:
        assert from_file is not None
        payload = from_file.read_bytes()
    body = {"topic": topic, "payloadBase64": base64.b64encode(payload).decode(), "qos": qos}
    done = api.call("devices", "publish", body, productKey=product, deviceKey=key)
    online = "online" if done["online"] else "offline"
    click.echo(
        f"{done['topic']}: {len(payload)} bytes to {done['subscribers']} subscriber(s);"
        f" the device is {online}"
    )


@device.command("export", help="Export a product's credentials to FILE (.csv or .json).")
@PRODUCT
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@with_api
def export_credentials(api: Any, product: str, file: Path) -> None:
    from broker.protocol.credentials_file import write_credentials

    rows = api.pages("devices", "exportCredentials", productKey=product)
    write_credentials(file, rows)
    click.echo(f"exported {len(rows)} devices' credentials to {file}")
