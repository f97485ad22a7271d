"""`gatehouse serve`: run the service on a data directory."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from pathlib import Path
from typing import Any

from broker.api.limits import DEFAULT_MAX_BODY
from broker.cli.common import positive
from broker.codecs import CodecError, parse_codec_option
from broker.connect_guard import SIGN_FAILURE_LIMIT, ConnectLimit
from broker.core import CoreLimits
from broker.gate import GateConfig
from broker.routing import DEFAULT_MAX_PAYLOAD
from broker.serve import ServeConfig, event_loop, serve
from broker.writer import WriterConfig
from certs import CertificateError
from registry import RegistryError


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


def register(commands: Any) -> None:
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
        type=positive,
        default=DEFAULT_MAX_BODY,
        help="largest API request body in bytes; a bigger one is refused with 413 before"
        " it is read (default %(default)s, over twice a 10,000-device batchCreate)",
    )
    serve_p.add_argument(
        "--max-queued-messages",
        type=positive,
        default=CoreLimits().max_queued,
        help="QoS 1/2 messages kept per client while it is offline or behind;"
        " when full the oldest is dropped (default %(default)s)",
    )
    serve_p.add_argument(
        "--max-retained-messages",
        type=positive,
        default=CoreLimits().max_retained,
        help="retained messages kept at once; a retained PUBLISH to a new topic past it"
        " is routed but not retained (default %(default)s)",
    )
    serve_p.add_argument(
        "--max-retained-bytes",
        type=positive,
        default=CoreLimits().max_retained_bytes,
        help="payload bytes of all retained messages together, bounded the same way"
        " (default %(default)s)",
    )
    serve_p.add_argument(
        "--max-inflight",
        type=positive,
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
        type=positive,
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
        type=positive,
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
        type=positive,
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
