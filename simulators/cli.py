"""`gatehouse load` and `gatehouse sim`: loaded by `broker.cli` only when asked."""

from __future__ import annotations

import argparse
import asyncio
import logging
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
import orjson

from broker.protocol.credentials_file import read_credentials
from broker.protocol.scripts import ScriptError
from simulators.device import CONNECT_ATTEMPTS, ConnectRefused, DeviceCredentials, SimDevice
from simulators.gateway import SimGateway
from simulators.load import LoadConfig, run_workers
from simulators.platform import OrgCredentials, Platform, PlatformError
from simulators.raw import RawFrames
from simulators.refusals import RefusalReasons
from simulators.scenario import ScenarioError, load_scenario
from simulators.values import ModelValues

MAX_DURATION = 86_400.0


def _positive(text: str) -> float:
    value = float(text)
    if not 0 < value <= MAX_DURATION * 1000:
        raise argparse.ArgumentTypeError(f"must be above 0, not {text}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 1_000_000:
        raise argparse.ArgumentTypeError(f"must be 0 to 1,000,000, not {text}")
    return value


def _share(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be a share from 0 to 1, not {text}")
    return value


def _attempts(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be 1 to 100, not {text}")
    return value


def _connection_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="the platform's address")
    parser.add_argument("--mqtt-port", type=int, default=1883)
    parser.add_argument("--http-port", type=int, default=8080, help="its REST API's port")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path("gatehouse-data"),
        help="where credentials.json is, when the environment has none",
    )


def _platform(args: argparse.Namespace) -> Platform:
    return Platform(f"http://{args.host}:{args.http_port}", OrgCredentials.find(args.data_dir))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gatehouse", description="Simulated devices and load.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    load = commands.add_parser(
        "load",
        help="provision devices, connect them at a ramp, publish at a rate, report",
        description="Provision devices through the API, connect them at --ramp CONNECTs a"
        " second, publish measurepoint posts at --rate a second (all devices together) for"
        " --duration seconds, and report connects, failures by reason, replies and latency"
        " percentiles, and the runner's own CPU. Organisation credentials come from"
        " GATEHOUSE_ORG_ID, GATEHOUSE_ACCESS_KEY and GATEHOUSE_ACCESS_SECRET (or"
        " --data-dir). Ctrl-C stops it with the report so far.",
    )
    load.add_argument("--devices", type=_count, default=100, help="directly connected devices")
    load.add_argument("--gateways", type=_count, default=0)
    load.add_argument("--subdevices-per-gateway", type=_count, default=0)
    load.add_argument("--rate", type=_positive, default=100.0, help="posts a second, in all")
    load.add_argument("--duration", type=_positive, default=10.0, help="seconds of posting")
    load.add_argument("--ramp", type=_positive, default=500.0, help="CONNECTs a second")
    load.add_argument("--qos", type=int, choices=(0, 1), default=1)
    load.add_argument(
        "--dialect",
        choices=("enos", "alink"),
        default="enos",
        help="how the devices sign in and post (gateways speak EnOS)",
    )
    load.add_argument(
        "--wrong-secret-share",
        type=_share,
        default=0.0,
        help="the share of devices that sign with a wrong secret (refusals)",
    )
    load.add_argument(
        "--bad-value-share",
        type=_share,
        default=0.0,
        help="the share of posts with a value outside the model (460 replies)",
    )
    load.add_argument(
        "--malformed-share",
        type=_share,
        default=0.0,
        help="the share of posts that are not JSON (6207 replies)",
    )
    load.add_argument(
        "--reconnect-storm-share",
        type=_share,
        default=0.0,
        help="the share of devices that reconnect at once, again and again",
    )
    load.add_argument(
        "--scenario",
        type=Path,
        help="a TOML or JSON file of these settings and bad behaviour;"
        " options given on the command line win",
    )
    load.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes to spread the devices and the rate over (default 1)",
    )
    load.add_argument(
        "--credentials",
        type=Path,
        help="use the devices of this file (from `gatehouse device export`,"
        " .csv or .json) instead of creating new ones",
    )
    load.add_argument("--report", type=Path, help="also write the report here as JSON")
    load.add_argument("--no-progress", action="store_true", help="no live progress line")
    _connection_args(load)
    load.set_defaults(func=cmd_load)

    sim = commands.add_parser("sim", help="run one simulated device or gateway").add_subparsers(
        dest="kind", metavar="KIND", required=True
    )
    for kind in ("device", "gateway"):
        one = sim.add_parser(
            kind,
            help=f"a simulated {kind}: posts values from its thing model, answers commands",
        )
        one.add_argument("--product", required=True, help="ProductKey")
        one.add_argument("--key", required=True, help="DeviceKey")
        one.add_argument(
            "--secret", required=True, help="DeviceSecret (or the ProductSecret with --activate)"
        )
        one.add_argument("--rate", type=_positive, default=1.0, help="posts a second")
        one.add_argument("--duration", type=_positive, default=60.0, help="seconds to run")
        one.add_argument("--qos", type=int, choices=(0, 1), default=1)
        one.add_argument(
            "--dialect",
            choices=("enos", "alink"),
            default="enos",
            help="sign in and post as the EnOS SDK or as linkkit does",
        )
        one.add_argument(
            "--max-attempts",
            type=_attempts,
            default=CONNECT_ATTEMPTS,
            help="CONNECT attempts before giving up, 1, 2, 4 ... seconds apart"
            f" (default {CONNECT_ATTEMPTS}, EnOS's burst: more CONNECTs within 2 minutes"
            " block the device for 5)",
        )
        one.add_argument("--ca", type=Path, help="connect over TLS, trusting this CA (PEM)")
        one.add_argument("--cert", type=Path, help="a client certificate (PEM), with --key-file")
        one.add_argument("--key-file", type=Path, help="the client certificate's key (PEM)")
        if kind == "device":
            one.add_argument(
                "--payload-script",
                type=Path,
                help="speak Custom: post and answer as this script's frames (deviceToRaw,"
                " rawToDevice; see examples/th_frame/device.js) on model/up_raw, down_raw",
            )
            one.add_argument(
                "--activate",
                action="store_true",
                help="dynamic activation: sign with the ProductSecret",
            )
        else:
            one.add_argument("--subdevice-product", required=True, help="their ProductKey")
            one.add_argument(
                "--subdevices",
                type=_count,
                default=10,
                help="sub-devices to register, add and log in",
            )
        _connection_args(one)
        one.set_defaults(func=cmd_sim)
    return parser


LOAD_OPTIONS = (
    "devices",
    "gateways",
    "subdevices_per_gateway",
    "rate",
    "duration",
    "ramp",
    "qos",
    "wrong_secret_share",
    "bad_value_share",
    "malformed_share",
    "reconnect_storm_share",
)


def cmd_load(args: argparse.Namespace) -> int:
    settings: dict[str, Any] = {}
    if args.scenario is not None:
        settings.update(load_scenario(args.scenario).settings())
    defaults = build_parser().parse_args(["load"])
    for name in LOAD_OPTIONS:
        if name not in settings or getattr(args, name) != getattr(defaults, name):
            settings[name] = getattr(args, name)
    if not 1 <= args.workers <= 64:
        raise ScenarioError("--workers must be 1 to 64")
    exported: tuple[DeviceCredentials, ...] = ()
    if args.credentials is not None:
        try:
            rows = read_credentials(args.credentials)
            exported = tuple(
                DeviceCredentials(r["productKey"], r["deviceKey"], r["deviceSecret"]) for r in rows
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ScenarioError(f"cannot read credentials from {args.credentials}: {exc}") from None
        settings["devices"] = (
            min(settings["devices"], len(exported)) if "devices" in settings else len(exported)
        )
    config = LoadConfig(
        dialect=args.dialect,
        credentials=exported,
        host=args.host,
        mqtt_port=args.mqtt_port,
        progress=not args.no_progress and args.workers == 1,
        **settings,
    )
    url = f"http://{args.host}:{args.http_port}"
    report = run_workers(url, OrgCredentials.find(args.data_dir), config, args.workers)
    if config.progress:
        print(file=sys.stderr)
    print(report.table())
    if args.report is not None:
        args.report.write_bytes(orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2))
    return 1 if report.interrupted or report.stopped else 0


def _tls(args: argparse.Namespace) -> ssl.SSLContext | None:
    if args.ca is None:
        return None
    context = ssl.create_default_context(cafile=str(args.ca))
    if args.cert is not None:
        context.load_cert_chain(str(args.cert), str(args.key_file))
    return context


def cmd_sim(args: argparse.Namespace) -> int:
    platform = _platform(args)
    try:
        tsl = platform.thing_model(args.product)
        subs: list[DeviceCredentials] = []
        if args.kind == "gateway" and args.subdevices:
            keys = [f"{args.key}-sub{i:04d}" for i in range(args.subdevices)]
            subs = platform.create_devices(args.subdevice_product, keys, "s")
            platform.add_subdevices(DeviceCredentials(args.product, args.key, args.secret), subs)
        # Kept open: a refused CONNECT's reason is read from the device's log.
        reasons = RefusalReasons(platform, args.product, args.key)
        return asyncio.run(_simulate(args, tsl, subs, reasons))
    finally:
        platform.close()


def _raw_frames(path: Path | None) -> RawFrames | None:
    """The device script of --payload-script, loaded (and so checked) before connecting."""
    if path is None:
        return None
    try:
        return RawFrames.from_file(path)
    except OSError as exc:
        raise ScenarioError(f"--payload-script {path}: {exc.strerror or exc}") from None
    except ScriptError as exc:
        raise ScenarioError(f"--payload-script {path}: {exc.message}") from None


async def _connect(device: SimDevice, attempts: int, reasons: RefusalReasons) -> bool:
    """Connect within `attempts`, saying on stderr why each attempt failed."""
    await reasons.start()

    async def failed(attempt: int, error: ConnectRefused | OSError) -> None:
        if isinstance(error, ConnectRefused):
            why = await reasons.explain()
            said = f"; the platform says: {why}" if why else ""
            line = f"CONNECT {attempt} of {attempts} refused: CONNACK {error.code}{said}"
        else:
            line = f"CONNECT {attempt} of {attempts} failed: {error}"
        print(f"gatehouse: {line}", file=sys.stderr, flush=True)

    try:
        await device.connect_with_backoff(attempts, on_failure=failed)
    except (ConnectRefused, OSError):
        tries = "1 attempt" if attempts == 1 else f"{attempts} attempts"
        print(f"gatehouse: gave up after {tries}", file=sys.stderr)
        return False
    return True


async def _simulate(
    args: argparse.Namespace,
    tsl: dict[str, object],
    subs: list[DeviceCredentials],
    reasons: RefusalReasons,
) -> int:
    creds = DeviceCredentials(
        args.product, args.key, args.secret, getattr(args, "activate", False), args.dialect
    )
    device: SimDevice
    if args.kind == "gateway":
        device = SimGateway(creds, subs, args.host, args.mqtt_port, tls=_tls(args))
    else:
        device = SimDevice(
            creds,
            args.host,
            args.mqtt_port,
            tls=_tls(args),
            on_secret=lambda secret: print(f"activated: DeviceSecret {secret}", flush=True),
            raw=_raw_frames(args.payload_script),
        )
    values = ModelValues(tsl)
    if not await _connect(device, args.max_attempts, reasons):
        return 1
    targets: list[DeviceCredentials | None] = [None]
    if isinstance(device, SimGateway):
        await device.login_all()
        targets = [*subs] or [None]
    loop = asyncio.get_running_loop()
    stop_at = loop.time() + args.duration
    try:
        for n in range(int(args.duration * args.rate)):
            if loop.time() > stop_at:
                break
            sub = targets[n % len(targets)]
            reply = await device.post(
                values.next(),
                qos=args.qos,
                product_key=sub.product_key if sub else "",
                device_key=sub.device_key if sub else "",
            )
            print(orjson.dumps(reply).decode() if reply is not None else "no reply", flush=True)
            await asyncio.sleep(1 / args.rate)
    finally:
        await device.close()
    stats = device.stats
    print(
        f"sent {stats.sent}, replied {stats.replied}, faults {stats.faults},"
        f" commands answered {stats.commands}",
        file=sys.stderr,
    )
    return 0


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    # gmqtt logs every refused CONNACK at INFO: the report counts them instead.
    logging.getLogger("gmqtt").setLevel(logging.CRITICAL)
    try:
        result: int = args.func(args)
    except (PlatformError, ScenarioError) as exc:
        print(f"gatehouse: {exc}", file=sys.stderr)
        return 1
    return result


# The `gatehouse` dispatcher (click) hands these two their arguments as they came.
_PASS_THROUGH = {"ignore_unknown_options": True, "allow_extra_args": True}


@click.command(
    context_settings=_PASS_THROUGH,
    add_help_option=False,
    help="Put simulated devices on the wire at a rate and report.",
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def load(args: tuple[str, ...]) -> None:
    raise click.exceptions.Exit(main(["load", *args]))


@click.command(
    context_settings=_PASS_THROUGH,
    add_help_option=False,
    help="Run one simulated device or gateway.",
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def sim(args: tuple[str, ...]) -> None:
    raise click.exceptions.Exit(main(["sim", *args]))
