"""The `gatehouse` command: a thin dispatcher over the subcommands.

`serve` runs the service; `product`, `device`, `model` and `org` call a running
service's REST API. Later subcommands owned by `simulators` are loaded only when asked.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from broker.api.limits import DEFAULT_MAX_BODY
from broker.client import ApiClient, ApiError
from broker.codecs import CodecError, parse_codec_option
from broker.connect_guard import SIGN_FAILURE_LIMIT, ConnectLimit
from broker.core import CoreLimits
from broker.gate import GateConfig
from broker.protocol.credentials_file import write_credentials
from broker.routing import DEFAULT_MAX_PAYLOAD
from broker.serve import ServeConfig, event_loop, serve
from broker.writer import WriterConfig
from certs import CertificateError, make_key_and_csr
from registry import RegistryError

EPILOG = """\
API commands read the organisation's credentials from GATEHOUSE_ACCESS_KEY,
GATEHOUSE_ACCESS_SECRET and GATEHOUSE_ORG_ID, or else from the credentials.json that
`gatehouse serve` wrote into --data-dir. GATEHOUSE_URL sets the API address.
"""


def _print_json(data: Any) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


def _table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> None:
    cells = [list(map(str, header)), *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _json_arg(text: str) -> Any:
    """A JSON value given inline, or @FILE to read it from a file."""
    raw = Path(text[1:]).read_bytes() if text.startswith("@") else text.encode()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None


# ---------------------------------------------------------------------------- serve


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _connect_limit(text: str) -> ConnectLimit:
    try:
        return ConnectLimit.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _sign_failure_limit(text: str) -> ConnectLimit:
    try:
        return ConnectLimit.parse(text, interval=0.0)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _sign_max_age(text: str) -> float | None:
    """Seconds, or `off` (or 0) for no window."""
    if text.strip().lower() in ("off", "0"):
        return None
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds or off") from None
    if not seconds > 0 or seconds == float("inf"):
        raise argparse.ArgumentTypeError(f"must be above 0 seconds (or off), not {text}")
    return seconds


def _codec(text: str) -> tuple[str, str]:
    try:
        return parse_codec_option(text)
    except CodecError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_serve(args: argparse.Namespace) -> int:
    if (args.ca_cert is None) != (args.ca_key is None):
        print("gatehouse: give --ca-cert and --ca-key together", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.log_level != "debug":
        # amqtt logs every connection at INFO: a reconnect storm would flood the log.
        for noisy in ("amqtt", "transitions"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    config = ServeConfig(
        data_dir=args.data_dir,
        host=args.host,
        http_port=args.http_port,
        mqtt_port=args.mqtt_port,
        provision_file=args.provision,
        max_devices_per_product=args.max_devices_per_product,
        log_level=args.log_level,
        limits=CoreLimits(
            max_queued=args.max_queued_messages,
            max_inflight=args.max_inflight,
            connect_timeout=args.connect_timeout,
            max_packet=2 * args.max_payload + 65_536,
            disconnect_on_refused_publish=args.on_refused_publish == "disconnect",
            max_payload=args.max_payload,
            max_retained=args.max_retained_messages,
            max_retained_bytes=args.max_retained_bytes,
        ),
        gate=GateConfig(
            allow_anonymous=args.allow_anonymous,
            connect_limit=args.connect_limit,
            sign_failure_limit=args.sign_failure_limit,
            sign_max_age=args.sign_max_age,
            max_payload=args.max_payload,
            writer=WriterConfig(log_keep=args.message_log_size),
            max_subdevices_per_gateway=args.max_subdevices_per_gateway,
        ),
        codecs=dict(args.codec),
        mqtts_port=args.mqtts_port,
        ca_cert=args.ca_cert,
        ca_key=args.ca_key,
        max_api_body=args.max_api_body,
    )
    try:
        with contextlib.suppress(KeyboardInterrupt), event_loop(args.event_loop) as runner:
            runner.run(serve(config))
    except RegistryError as exc:
        # A bad --provision file or option: say what to fix, without a traceback.
        print(f"gatehouse: {exc.msg}", file=sys.stderr)
        return 2
    except (CodecError, CertificateError) as exc:
        print(f"gatehouse: {exc}", file=sys.stderr)
        return 2
    return 0


# ---------------------------------------------------------------------------- products


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
    _table(rows, ("PRODUCT KEY", "NAME", "TYPE", "FORMAT", "MODEL"))
    return 0


def cmd_product_show(api: ApiClient, args: argparse.Namespace) -> int:
    product = api.call("products", "get", productKey=args.product_key)
    product["statistics"] = api.call("statistics", "get", productKey=args.product_key)
    _print_json(product)
    return 0


# ---------------------------------------------------------------------------- devices


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
        _print_json(created[0])
    else:
        print(f"created {len(created)} devices (use --export FILE for their credentials)")
    return 0


def cmd_device_list(api: ApiClient, args: argparse.Namespace) -> int:
    devices = api.pages("devices", "list", productKey=args.product)
    rows = [(d["deviceKey"], d["deviceName"]["defaultValue"], d["state"]) for d in devices]
    _table(rows, ("DEVICE KEY", "NAME", "STATE"))
    return 0


def cmd_device_show(api: ApiClient, args: argparse.Namespace) -> int:
    _print_json(api.call("devices", "get", productKey=args.product, deviceKey=args.key))
    return 0


def cmd_device_block_show(api: ApiClient, args: argparse.Namespace) -> int:
    data = api.call("devices", "getConnectBlock", productKey=args.product, deviceKey=args.key)
    _print_json(data)
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


# ---------------------------------------------------------------------------- models


def cmd_model_import(api: ApiClient, args: argparse.Namespace) -> int:
    data = _json_arg("@" + str(args.file))
    if not isinstance(data, dict):
        raise ApiError(0, 0, f"{args.file} must hold a JSON object")
    # Either {"modelId", "name", "tsl"} or a bare TSL document (then --model-id is needed).
    body = dict(data) if "tsl" in data else {"tsl": data}
    if args.model_id:
        body["modelId"] = args.model_id
    if args.name:
        body["name"] = args.name
    if "modelId" not in body:
        raise ApiError(0, 0, f"{args.file} has no modelId; give --model-id")
    print(api.call("thing-models", "create", body))
    return 0


def cmd_model_list(api: ApiClient, args: argparse.Namespace) -> int:
    models = api.call("thing-models", "list", pageSize=1000)
    tsl = [m["tsl"] for m in models]
    rows = [
        (m["modelId"], m["name"], len(t.get("properties", [])), len(t.get("services", [])))
        for m, t in zip(models, tsl, strict=True)
    ]
    _table(rows, ("MODEL ID", "NAME", "PROPERTIES", "SERVICES"))
    return 0


def cmd_model_show(api: ApiClient, args: argparse.Namespace) -> int:
    _print_json(api.call("thing-models", "get", modelId=args.model_id))
    return 0


def cmd_org_create(api: ApiClient, args: argparse.Namespace) -> int:
    _print_json(api.call("organizations", "create", {"name": args.name}))
    return 0


# ---------------------------------------------------------------------------- commands

SIMULATOR_COMMANDS = {
    "load": "put simulated devices on the wire at a rate and report (see gatehouse load --help)",
    "sim": "run one simulated device or gateway (see gatehouse sim device --help)",
}
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
    _print_json(data)
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
    _print_json(api.call("commands", "get", commandId=args.command_id))
    return 0


def cmd_command_list(api: ApiClient, args: argparse.Namespace) -> int:
    rows = api.call("commands", "list", productKey=args.product, deviceKey=args.key)
    header = ("COMMAND", "KIND", "STATE", "CODE", "CREATED")
    _table(
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
    _print_json(api.call("commands", "cancel", commandId=args.command_id))
    return 0


# ---------------------------------------------------------------------------- certificates


def _write_secret(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def cmd_cert_keygen(args: argparse.Namespace) -> int:
    key_pem, csr_pem = make_key_and_csr(args.product, args.key)
    key_path, csr_path = args.out / f"{args.key}.key", args.out / f"{args.key}.csr"
    _write_secret(key_path, key_pem)
    csr_path.write_text(csr_pem)
    print(f"{key_path}\n{csr_path}")
    return 0


def _save_issued(args: argparse.Namespace, data: dict[str, Any]) -> int:
    args.out.write_text(data["cert"])
    if args.ca_out is not None:
        args.ca_out.write_text(data["caCert"])
    print(data["certSN"])
    return 0


def cmd_cert_apply(api: ApiClient, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"csr": args.csr.read_text()}
    if args.valid_day is not None:
        body["validDay"] = args.valid_day
    data = api.call(
        "device-certificates", "apply", body, productKey=args.product, deviceKey=args.key
    )
    return _save_issued(args, data)


def cmd_cert_renew(api: ApiClient, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"certSN": args.sn}
    if args.valid_day is not None:
        body["validDay"] = args.valid_day
    data = api.call(
        "device-certificates", "renew", body, productKey=args.product, deviceKey=args.key
    )
    return _save_issued(args, data)


def cmd_cert_revoke(api: ApiClient, args: argparse.Namespace) -> int:
    api.call(
        "device-certificates",
        "revoke",
        {"certSN": args.sn},
        productKey=args.product,
        deviceKey=args.key,
    )
    return 0


def cmd_cert_list(api: ApiClient, args: argparse.Namespace) -> int:
    rows = api.call("device-certificates", "list", productKey=args.product, deviceKey=args.key)
    _table(
        [
            (c["certSN"], c["notBefore"], c["notAfter"], "revoked" if c["revoked"] else "")
            for c in rows
        ],
        ("CERT SN", "NOT BEFORE", "NOT AFTER", ""),
    )
    return 0


def cmd_cert_ca(api: ApiClient, args: argparse.Namespace) -> int:
    pem = api.call("device-certificates", "getCaCert")["caCert"]
    if args.out is None:
        sys.stdout.write(pem)
    else:
        args.out.write_text(pem)
    return 0


def cmd_stats(api: ApiClient, args: argparse.Namespace) -> int:
    _print_json(api.call("broker", "stats"))
    return 0


# ---------------------------------------------------------------------------- parser

ApiCommand = Callable[[ApiClient, argparse.Namespace], int]


def _api_parser(sub: Any, name: str, help_text: str, func: ApiCommand) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text)
    parser.add_argument("--url", help="the API (default $GATEHOUSE_URL or http://127.0.0.1:8080)")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path("gatehouse-data"),
        help="where to find credentials.json when the environment has none",
    )
    parser.set_defaults(api_func=func)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gatehouse",
        description="A local emulator of an IoT platform's device-connection layer.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve_p = commands.add_parser(
        "serve",
        help="run gatehouse (MQTT broker, registry and REST API) on a data directory",
        description="Run gatehouse: the MQTT broker, the registry and its REST API,"
        " in one process, on one data directory."
        " A new data directory gets an organisation whose credentials are printed once"
        " and saved to DATA_DIR/credentials.json.",
    )
    serve_p.add_argument("--data-dir", type=Path, default=Path("gatehouse-data"))
    serve_p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve_p.add_argument("--http-port", type=int, default=8080, help="REST API port")
    serve_p.add_argument("--mqtt-port", type=int, default=1883, help="MQTT 3.1.1 port")
    serve_p.add_argument(
        "--mqtts-port",
        type=int,
        default=8883,
        help="MQTT over TLS (client certificates for two-way products); 0 for none"
        " (default %(default)s)",
    )
    serve_p.add_argument(
        "--ca-cert", type=Path, help="a CA certificate (PEM) to use instead of DATA_DIR/ca's own"
    )
    serve_p.add_argument("--ca-key", type=Path, help="the private key (PEM) of --ca-cert")
    serve_p.add_argument(
        "--allow-anonymous",
        action="store_true",
        help="admit MQTT clients without credentials, outside /sys/, /ext/ and $SYS only",
    )
    serve_p.add_argument(
        "--provision", type=Path, help="a TOML or JSON file of models, products, devices"
    )
    serve_p.add_argument("--max-devices-per-product", type=int, default=10_000)
    serve_p.add_argument(
        "--max-api-body",
        type=_positive,
        default=DEFAULT_MAX_BODY,
        help="largest API request body in bytes; a bigger one is refused with 413 before"
        " it is read (default %(default)s, over twice a 10,000-device batchCreate)",
    )
    serve_p.add_argument(
        "--max-queued-messages",
        type=_positive,
        default=CoreLimits().max_queued,
        help="QoS 1/2 messages kept per client while it is offline or behind;"
        " when full the oldest is dropped (default %(default)s)",
    )
    serve_p.add_argument(
        "--max-retained-messages",
        type=_positive,
        default=CoreLimits().max_retained,
        help="retained messages kept at once; a retained PUBLISH to a new topic past it"
        " is routed but not retained (default %(default)s)",
    )
    serve_p.add_argument(
        "--max-retained-bytes",
        type=_positive,
        default=CoreLimits().max_retained_bytes,
        help="payload bytes of all retained messages together, bounded the same way"
        " (default %(default)s)",
    )
    serve_p.add_argument(
        "--max-inflight",
        type=_positive,
        default=CoreLimits().max_inflight,
        help="unacknowledged QoS 1/2 messages per client (default %(default)s)",
    )
    serve_p.add_argument(
        "--connect-timeout",
        type=float,
        default=CoreLimits().connect_timeout,
        help="seconds a new MQTT connection may take to send CONNECT (default %(default)s)",
    )
    serve_p.add_argument(
        "--max-payload",
        type=_positive,
        default=DEFAULT_MAX_PAYLOAD,
        help="largest device payload in bytes; a bigger request gets reply code 1220,"
        " and a packet over twice this ends the connection (default %(default)s, EnOS's)",
    )
    serve_p.add_argument(
        "--connect-limit",
        type=_connect_limit,
        default=ConnectLimit(),
        metavar="BURST/WINDOW:BLOCK",
        help="per-device CONNECT limit: at most one a second and BURST within WINDOW"
        " seconds, else refused for BLOCK seconds; 'off' to disable (default 4/120:300, EnOS's)."
        " Counts only CONNECTs that proved the secret",
    )
    failures = SIGN_FAILURE_LIMIT
    serve_p.add_argument(
        "--sign-failure-limit",
        type=_sign_failure_limit,
        default=failures,
        metavar="BURST/WINDOW:BLOCK",
        help="per device and source address: more than BURST wrong (or stale, or replayed)"
        " signs within WINDOW seconds, and that address's CONNECTs for the device are"
        " refused for BLOCK seconds; others' are not; 'off' to disable"
        f" (default {failures.burst}/{failures.window:g}:{failures.block:g})",
    )
    serve_p.add_argument(
        "--sign-max-age",
        type=_sign_max_age,
        default=None,
        metavar="SECONDS|off",
        help="refuse a sign (CONNECT or sub-device login) whose timestamp is more than"
        " SECONDS off the server's clock, or used before; off: any age, for devices"
        " without a clock and SDKs that sign once per process (default off)",
    )
    serve_p.add_argument(
        "--max-subdevices-per-gateway",
        type=_positive,
        default=GateConfig().max_subdevices_per_gateway,
        help="sub-devices online through one gateway at once (default %(default)s, EnOS's)",
    )
    serve_p.add_argument(
        "--on-refused-publish",
        choices=("drop", "disconnect"),
        default="drop",
        help="what happens to a PUBLISH outside the client's topics: dropped and"
        " counted, or the connection is closed too (default %(default)s)",
    )
    serve_p.add_argument(
        "--message-log-size",
        type=_positive,
        default=WriterConfig().log_keep,
        help="device messages and events the registry keeps, newest first (default %(default)s)",
    )
    serve_p.add_argument(
        "--codec",
        type=_codec,
        action="append",
        default=[],
        metavar="NAME=MODULE:ATTR",
        help="load a codec for Custom products (repeatable); 'json' is built in",
    )
    serve_p.add_argument(
        "--event-loop",
        choices=("auto", "uvloop", "asyncio"),
        default="auto",
        help="auto uses uvloop where it is installed (default %(default)s)",
    )
    serve_p.add_argument(
        "--log-level", default="info", choices=("debug", "info", "warning", "error")
    )
    serve_p.set_defaults(func=cmd_serve)

    product = commands.add_parser("product", help="manage products").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    create = _api_parser(
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
        "--body", type=_json_arg, help="more settings as JSON (or @FILE), EnOS field names"
    )
    _api_parser(product, "list", "list products", cmd_product_list)
    show = _api_parser(product, "show", "show a product and its statistics", cmd_product_show)
    show.add_argument("product_key", metavar="PRODUCT_KEY")

    device = commands.add_parser("device", help="manage devices").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    create = _api_parser(
        device, "create", "create one device or --count of them", cmd_device_create
    )
    create.add_argument("--product", required=True, help="ProductKey")
    create.add_argument("--count", type=int, default=1)
    create.add_argument("--key", help="a fixed DeviceKey (one device)")
    create.add_argument("--secret", help="a fixed DeviceSecret (one device)")
    create.add_argument("--name", help="name (with --count, a prefix)")
    create.add_argument("--timezone", default="+00:00")
    create.add_argument("--export", type=Path, help="write the credentials to FILE (.csv or .json)")
    listing = _api_parser(device, "list", "list a product's devices", cmd_device_list)
    listing.add_argument("--product", required=True)
    show = _api_parser(device, "show", "show a device", cmd_device_show)
    show.add_argument("--product", required=True)
    show.add_argument("--key", required=True)
    block = device.add_parser(
        "block", help="see or lift what keeps a device from connecting"
    ).add_subparsers(dest="block_action", metavar="ACTION", required=True)
    for name, help_text, func in (
        ("show", "a device's connect blocks and recent wrong signs", cmd_device_block_show),
        ("clear", "lift a device's connect blocks at once", cmd_device_block_clear),
    ):
        blocked = _api_parser(block, name, help_text, func)
        blocked.add_argument("--product", required=True, help="ProductKey")
        blocked.add_argument("--key", required=True, help="DeviceKey")
    export = _api_parser(device, "export", "export a product's credentials", cmd_device_export)
    export.add_argument("--product", required=True)
    export.add_argument("file", type=Path, metavar="FILE", help=".csv or .json")

    model = commands.add_parser("model", help="manage thing models").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    imported = _api_parser(model, "import", "import a thing model from a file", cmd_model_import)
    imported.add_argument("file", type=Path, metavar="FILE")
    imported.add_argument("--model-id")
    imported.add_argument("--name")
    _api_parser(model, "list", "list thing models", cmd_model_list)
    show = _api_parser(model, "show", "show a thing model", cmd_model_show)
    show.add_argument("model_id", metavar="MODEL_ID")

    org = commands.add_parser("org", help="manage organisations (admin)").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    created = _api_parser(
        org, "create", "create an organisation; prints its credentials", cmd_org_create
    )
    created.add_argument("--name", required=True)

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
        sender = _api_parser(command, name, help_text, func)
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
                "--input", type=_json_arg, default={}, help="inputData as JSON (or @FILE)"
            )
        elif name == "set":
            sender.add_argument(
                "--points", type=_json_arg, required=True, help="e.g. '{\"target\": 21}'"
            )
        else:
            sender.add_argument("--hex", required=True, help="the bytes, in hexadecimal")
    shown = _api_parser(command, "show", "show a command and its state", cmd_command_show)
    shown.add_argument("command_id", metavar="COMMAND_ID")
    listed = _api_parser(command, "list", "a device's latest commands", cmd_command_list)
    listed.add_argument("--product", required=True)
    listed.add_argument("--key", required=True)
    cancelled = _api_parser(command, "cancel", "cancel a pending command", cmd_command_cancel)
    cancelled.add_argument("command_id", metavar="COMMAND_ID")

    for name, help_text in SIMULATOR_COMMANDS.items():
        commands.add_parser(name, help=help_text, add_help=False)

    cert = commands.add_parser(
        "cert", help="device certificates for two-way TLS products"
    ).add_subparsers(dest="action", metavar="ACTION", required=True)
    keygen = cert.add_parser("keygen", help="make a device key and CSR locally (no server needed)")
    keygen.add_argument("--product", required=True, help="ProductKey")
    keygen.add_argument("--key", required=True, help="DeviceKey")
    keygen.add_argument("--out", type=Path, default=Path("."), help="directory (default .)")
    keygen.set_defaults(func=cmd_cert_keygen)
    for name, help_text, func in (
        ("apply", "have the CA sign a CSR; writes the certificate, prints its SN", cmd_cert_apply),
        ("renew", "a new certificate for the key of an issued one", cmd_cert_renew),
    ):
        issue = _api_parser(cert, name, help_text, func)
        issue.add_argument("--product", required=True)
        issue.add_argument("--key", required=True)
        if name == "apply":
            issue.add_argument("--csr", type=Path, required=True, help="the CSR (PEM)")
        else:
            issue.add_argument("--sn", required=True, help="the certSN to renew")
        issue.add_argument("--valid-day", type=int, help="days (default: the product's)")
        issue.add_argument("--out", type=Path, required=True, help="where to write the certificate")
        issue.add_argument("--ca-out", type=Path, help="where to write the CA certificate too")
    revoke = _api_parser(
        cert, "revoke", "revoke a certificate (effective at once)", cmd_cert_revoke
    )
    revoke.add_argument("--product", required=True)
    revoke.add_argument("--key", required=True)
    revoke.add_argument("--sn", required=True)
    listing = _api_parser(cert, "list", "a device's certificates", cmd_cert_list)
    listing.add_argument("--product", required=True)
    listing.add_argument("--key", required=True)
    ca = _api_parser(cert, "ca", "the CA certificate (PEM), to trust the server with", cmd_cert_ca)
    ca.add_argument("--out", type=Path, help="write it to FILE instead of stdout")

    _api_parser(
        commands,
        "stats",
        "what the running broker has counted: connections, refusals, messages routed,"
        " refused and dropped, rows written behind (admin)",
        cmd_stats,
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SIMULATOR_COMMANDS:
        # Owned by `simulators`, loaded only when asked.
        from simulators.cli import main as simulators_main

        return simulators_main(argv)
    args = build_parser().parse_args(argv)
    if hasattr(args, "func"):
        result: int = args.func(args)
        return result
    try:
        api = ApiClient.from_env(args.url, args.data_dir)
        try:
            result = args.api_func(api, args)
        finally:
            api.close()
    except ApiError as exc:
        print(f"gatehouse: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"gatehouse: {exc}", file=sys.stderr)
        return 1
    return result


if __name__ == "__main__":
    sys.exit(main())
