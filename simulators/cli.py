"""`gatehouse load` and `gatehouse sim`: loaded by `broker.cli` only when asked.

Both find the platform by `--url` (or GATEHOUSE_URL), as every other command does,
and its MQTT endpoint on the same host unless `--mqtt-host` says otherwise.
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import ssl
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import orjson
from click.core import ParameterSource

from broker.protocol.credentials_file import read_credentials
from broker.protocol.dialects import DEFAULT, NAMES, dialect_named
from broker.protocol.scripts import ScriptError
from simulators.device import CONNECT_ATTEMPTS, ConnectRefused, DeviceCredentials, SimDevice
from simulators.gateway import SimGateway
from simulators.load import LoadConfig, LoadReport, merge, run_workers, shard_of
from simulators.platform import OrgCredentials, Platform, PlatformError
from simulators.raw import RawFrames
from simulators.refusals import RefusalReasons
from simulators.scenario import ScenarioError, load_scenario
from simulators.thresholds import ThresholdError, Thresholds
from simulators.values import ModelValues

MAX_DURATION = 86_400.0
THRESHOLDS_FAILED = 3  # the exit code of a run that missed a --fail-if condition
CONTEXT = {
    "show_default": True,
    "help_option_names": ["-h", "--help"],
    "max_content_width": 100,
    "terminal_width": 100,
}
POSITIVE = click.FloatRange(0, MAX_DURATION * 1000, min_open=True)
COUNT = click.IntRange(0, 1_000_000)
SHARE = click.FloatRange(0, 1)
FILE = click.Path(dir_okay=False, path_type=Path)
EXISTING = click.Path(exists=True, dir_okay=False, path_type=Path)


class Failure(click.ClickException):
    def show(self, file: Any = None) -> None:
        click.echo(f"gatehouse: {self.format_message()}", err=True)


def _platform_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Where the platform is: its API, its MQTT endpoint, and the credentials."""
    for option in (
        click.option(
            "--data-dir",
            envvar="GATEHOUSE_DATA_DIR",
            show_envvar=True,
            type=click.Path(file_okay=False, path_type=Path),
            default=Path("gatehouse-data"),
            help="where credentials.json is, when GATEHOUSE_ACCESS_KEY and _SECRET are not set",
        ),
        click.option(
            "--mqtt-port",
            type=click.IntRange(1, 65_535),
            help="the MQTT port  [default: 1883, or 8883 with TLS]",
        ),
        click.option("--mqtt-host", help="the MQTT host  [default: the --url's host]"),
        click.option(
            "--url",
            envvar="GATEHOUSE_URL",
            show_envvar=True,
            default="http://127.0.0.1:8080",
            help="the platform's API",
        ),
    ):
        func = option(func)
    return func


def _endpoint(url: str, host: str | None, port: int | None, tls: bool) -> tuple[str, int]:
    found = urlsplit(url)
    if found.scheme not in ("http", "https") or not found.hostname:
        raise click.BadParameter(f"{url!r} is not an http(s):// address", param_hint="--url")
    return host or found.hostname, port or (8883 if tls else 1883)


def _credentials(data_dir: Path) -> OrgCredentials:
    try:
        return OrgCredentials.find(data_dir)
    except PlatformError as exc:
        raise Failure(str(exc)) from None


def _shard(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, int]:
    if value is None:
        return (1, 1)
    k, _, n = value.partition("/")
    try:
        shard = (int(k), int(n))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not K/N, e.g. 2/4") from None
    if not 1 <= shard[0] <= shard[1] <= 1000:
        raise click.BadParameter(f"{value!r}: K must be 1 to N")
    return shard


def _thresholds(ctx: click.Context, param: click.Parameter, value: str | None) -> Thresholds:
    try:
        return Thresholds.parse(value or "")
    except ThresholdError as exc:
        raise click.BadParameter(str(exc)) from None


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gatehouse")
    except PackageNotFoundError:
        return "unknown"


LOAD_HELP = (
    "Provision devices through the API, connect them at --ramp CONNECTs a second, publish"
    " measurepoint posts at --rate a second (all devices together) for --duration seconds,"
    " and report connects and their latency, failures by reason, replies, latency"
    " percentiles (HDR histograms) and the runner's own CPU. Ctrl-C stops it with the"
    " report so far. Exit codes: 0 done, 1 interrupted or stopped early, 3 a --fail-if"
    " condition met."
)
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
    "psm_share",
    "psm_cycle",
    "psm_awake",
    "edrx_share",
    "edrx_cycle",
)
EDRX_CYCLE = click.FloatRange(20.48, 10_485.76)  # the product rule's range


@click.group(
    "load", context_settings=CONTEXT, invoke_without_command=True, help=LOAD_HELP,
    short_help="Put simulated devices on the wire at a rate and report.",
)  # fmt: skip
@click.option("--devices", type=COUNT, default=100, help="directly connected devices")
@click.option("--gateways", type=COUNT, default=0, help="gateways, of --dialect too")
@click.option("--subdevices-per-gateway", type=COUNT, default=0, help="sub-devices of each")
@click.option("--rate", type=POSITIVE, default=100.0, help="posts a second, in all")
@click.option("--duration", type=POSITIVE, default=10.0, help="seconds of posting")
@click.option("--ramp", type=POSITIVE, default=500.0, help="CONNECTs a second")
@click.option("--qos", type=click.IntRange(0, 1), default=1, help="of the posts")
@click.option(
    "--dialect",
    type=click.Choice(NAMES),
    default=DEFAULT.name,
    help="how the devices sign in and post",
)
@click.option(
    "--wrong-secret-share", type=SHARE, default=0.0, help="devices signing with a wrong secret"
)
@click.option("--bad-value-share", type=SHARE, default=0.0, help="posts outside the model (460)")
@click.option("--malformed-share", type=SHARE, default=0.0, help="posts not JSON (6207)")
@click.option(
    "--reconnect-storm-share", type=SHARE, default=0.0, help="devices reconnecting at once"
)
@click.option(
    "--psm-share",
    type=SHARE,
    default=0.0,
    help="devices that sleep in PSM (NB-IoT on China Telecom AEP, a product of their own):"
    " each wakes every --psm-cycle s, posts once, stays up --psm-awake s, disconnects",
)
@click.option(
    "--psm-cycle",
    type=POSITIVE,
    default=60.0,
    help="seconds from one PSM wake to the next (below 30 s the connect limit refuses some)",
)
@click.option("--psm-awake", type=POSITIVE, default=2.0, help="seconds a PSM device stays up")
@click.option(
    "--edrx-share",
    type=SHARE,
    default=0.0,
    help="devices in eDRX (a product of their own): connected, posting once a --edrx-cycle",
)
@click.option("--edrx-cycle", type=EDRX_CYCLE, default=20.48, help="the eDRX cycle, seconds")
@click.option(
    "--scenario",
    type=EXISTING,
    help="a TOML or JSON file of these settings and bad behaviour; the command line wins",
)
@click.option("--workers", type=click.IntRange(1, 64), default=1, help="processes to use")
@click.option(
    "--shard",
    callback=_shard,
    metavar="K/N",
    help="run only part K of N of the fleet (devices, rate, ramp, a credentials file's rows),"
    " for N runners or machines with no overlap; merge their reports with `load merge`",
)
@click.option(
    "--credentials",
    type=EXISTING,
    help="use the devices of this file (from `gatehouse device export`) instead of new ones",
)
@click.option("--cleanup", is_flag=True, help="delete what the run provisioned, at its end")
@click.option("--tls", is_flag=True, help="MQTT over TLS")
@click.option(
    "--subscribe-replies",
    is_flag=True,
    help="each device subscribes to its reply topic, for a broker that does not put devices"
    " on their topics itself (gatehouse and EnOS do)",
)
@click.option("--ca", type=EXISTING, help="the CA (PEM) to trust with --tls  [default: system's]")
@click.option("--report", type=FILE, help="also write the report here as JSON")
@click.option(
    "--series",
    type=FILE,
    help="write one row per second (t, connected, sent, replied, errors, p50, p99): CSV for"
    " a .csv name, else JSON lines",
)
@click.option(
    "--fail-if",
    callback=_thresholds,
    metavar="CONDITIONS",
    help='exit 3 when any is met, e.g. "p99>50ms,error_rate>0.1%,connected<100%"'
    " (p50 p90 p99 max, connect_p99 ..., error_rate, connected, sent_per_s, connects_per_s)",
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="a live progress line on stderr  [default: when stderr is a terminal]",
)
@_platform_options
@click.pass_context
def load(ctx: click.Context, /, **options: Any) -> None:
    if ctx.invoked_subcommand is not None:
        return
    try:
        code = _run_load(ctx, options)
    except (PlatformError, ScenarioError) as exc:
        raise Failure(str(exc)) from None
    raise click.exceptions.Exit(code)


def _run_load(ctx: click.Context, o: dict[str, Any]) -> int:
    settings: dict[str, Any] = {}
    if o["scenario"] is not None:
        settings.update(load_scenario(o["scenario"]).settings())
    for name in LOAD_OPTIONS:
        if name not in settings or ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE:
            settings[name] = o[name]
    exported: tuple[DeviceCredentials, ...] = ()
    if o["credentials"] is not None:
        try:
            rows = read_credentials(o["credentials"])
            exported = tuple(
                DeviceCredentials(r["productKey"], r["deviceKey"], r["deviceSecret"]) for r in rows
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ScenarioError(f"cannot read credentials from {o['credentials']}: {exc}") from None
        settings["devices"] = min(settings["devices"], len(exported))
        if settings["psm_share"] or settings["edrx_share"]:
            raise ScenarioError(
                "--psm-share and --edrx-share make devices of products of their own; with"
                " --credentials the devices' own products say whether they sleep"
            )
    if settings["psm_share"] + settings["edrx_share"] > 1:
        raise ScenarioError("--psm-share and --edrx-share add up to more than 1")
    if settings["psm_share"] and settings["psm_awake"] >= settings["psm_cycle"]:
        raise ScenarioError("--psm-awake must be shorter than --psm-cycle")
    host, port = _endpoint(o["url"], o["mqtt_host"], o["mqtt_port"], o["tls"])
    progress = sys.stderr.isatty() if o["progress"] is None else o["progress"]
    config = LoadConfig(
        dialect=o["dialect"],
        credentials=exported,
        host=host,
        mqtt_port=port,
        progress=progress and o["workers"] == 1,
        tls=o["tls"] or o["ca"] is not None,
        ca_file=str(o["ca"] or ""),
        cleanup=o["cleanup"],
        subscribe_replies=o["subscribe_replies"],
        shard=o["shard"],
        **settings,
    )
    k, n = o["shard"]
    if n > 1:
        config = shard_of(config, k - 1, n)
    report = run_workers(o["url"], _credentials(o["data_dir"]), config, o["workers"])
    report.gatehouse_version = _version()
    report.settings["url"] = o["url"]
    return _finish(report, o["report"], o["series"], o["fail_if"])


def _finish(report: LoadReport, out: Path | None, series: Path | None, fail: Thresholds) -> int:
    click.echo(report.table())
    if out is not None:
        out.write_bytes(orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2))
    if series is not None:
        write_series(series, report.series)
    failed = fail.failed(report)
    for said in failed:
        click.echo(f"gatehouse: failed --fail-if {said}", err=True)
    if report.interrupted or report.stopped:
        return 1
    return THRESHOLDS_FAILED if failed else 0


SERIES_COLUMNS = ("t", "connected", "sent", "replied", "errors", "p50", "p99")


def write_series(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    if path.suffix == ".csv":
        text = io.StringIO()
        writer = csv.DictWriter(text, SERIES_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        path.write_text(text.getvalue())
    else:
        path.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))


def _read_report(path: Path) -> LoadReport:
    try:
        data = orjson.loads(path.read_bytes())
        return LoadReport.from_dict(data)
    except (OSError, orjson.JSONDecodeError, TypeError) as exc:
        raise Failure(f"{path}: not a load report: {exc}") from None


@load.command(
    "report",
    context_settings=CONTEXT,
    help="Print a load report written with --report; with --html, draw it as an HTML page"
    " (throughput and latency over time, as inline SVG: no plotting library needed).",
)
@click.argument("file", type=EXISTING)
@click.option("--html", "html_out", type=FILE, help="write the HTML page here")
@click.option("--fail-if", callback=_thresholds, metavar="CONDITIONS", help="as for load")
def report_command(file: Path, html_out: Path | None, fail_if: Thresholds) -> None:
    report = _read_report(file)
    table = report.table()
    click.echo(table)
    if html_out is not None:
        from simulators.report_html import render

        html_out.write_text(render(report.as_dict(), table))
    failed = fail_if.failed(report)
    for said in failed:
        click.echo(f"gatehouse: failed --fail-if {said}", err=True)
    if failed:
        raise click.exceptions.Exit(THRESHOLDS_FAILED)


@load.command(
    "merge",
    context_settings=CONTEXT,
    help="Merge the reports of shards, workers or machines into one: counts added up,"
    " percentiles exact from their histograms.",
)
@click.argument("files", nargs=-1, required=True, type=EXISTING)
@click.option("--report", "out", type=FILE, help="write the merged report here as JSON")
@click.option("--series", type=FILE, help="write the merged series here (.csv or JSON lines)")
@click.option("--fail-if", callback=_thresholds, metavar="CONDITIONS", help="as for load")
def merge_command(
    files: tuple[Path, ...], out: Path | None, series: Path | None, fail_if: Thresholds
) -> None:
    merged = merge([_read_report(f) for f in files])
    raise click.exceptions.Exit(_finish(merged, out, series, fail_if))


# ---------------------------------------------------------------------------- sim


@click.group(context_settings=CONTEXT, help="Run one simulated device or gateway.")
def sim() -> None:
    pass


def _sim_options(func: Callable[..., Any]) -> Callable[..., Any]:
    for option in (
        click.option("-v", "--verbose", is_flag=True, help="print each packet sent and received"),
        click.option("--key-file", type=EXISTING, help="the client certificate's key (PEM)"),
        click.option("--cert", type=EXISTING, help="a client certificate (PEM), with --key-file"),
        click.option("--ca", type=EXISTING, help="connect over TLS, trusting this CA (PEM)"),
        click.option(
            "--max-attempts",
            type=click.IntRange(1, 100),
            default=CONNECT_ATTEMPTS,
            help="CONNECT attempts before giving up, 1, 2, 4 ... seconds apart (EnOS's burst:"
            " more CONNECTs within 2 minutes block the device for 5)",
        ),
        click.option(
            "--dialect",
            type=click.Choice(NAMES),
            default=DEFAULT.name,
            help="sign in and post as the EnOS SDK or as linkkit does",
        ),
        click.option("--qos", type=click.IntRange(0, 1), default=1, help="of the posts"),
        click.option("--duration", type=POSITIVE, default=60.0, help="seconds to run"),
        click.option("--rate", type=POSITIVE, default=1.0, help="posts a second"),
        click.option(
            "--secret",
            required=True,
            help="DeviceSecret (or the ProductSecret with --activate)",
        ),
        click.option("--key", required=True, help="DeviceKey"),
        click.option("--product", required=True, help="ProductKey"),
    ):
        func = option(func)
    return _platform_options(func)


@sim.command(
    context_settings=CONTEXT,
    help="A simulated device: posts values from its thing model, answers commands.",
)
@_sim_options
@click.option(
    "--payload-script",
    type=EXISTING,
    help="speak Custom: post and answer as this script's frames (deviceToRaw, rawToDevice;"
    " see examples/th_frame/device.js) on model/up_raw, down_raw",
)
@click.option("--activate", is_flag=True, help="dynamic activation: sign with the ProductSecret")
def device(**options: Any) -> None:
    raise click.exceptions.Exit(_sim("device", options))


@sim.command(
    context_settings=CONTEXT,
    help="A simulated gateway: registers, adds and logs in sub-devices, posts for them.",
)
@_sim_options
@click.option("--subdevice-product", required=True, help="the sub-devices' ProductKey")
@click.option("--subdevices", type=COUNT, default=10, help="sub-devices to register and log in")
def gateway(**options: Any) -> None:
    raise click.exceptions.Exit(_sim("gateway", options))


def _sim(kind: str, o: dict[str, Any]) -> int:
    # gmqtt logs every refused CONNACK at INFO: the simulator says why instead.
    logging.getLogger("gmqtt").setLevel(logging.CRITICAL)
    host, port = _endpoint(o["url"], o["mqtt_host"], o["mqtt_port"], o["ca"] is not None)
    platform = Platform(o["url"], _credentials(o["data_dir"]))
    try:
        tsl = platform.thing_model(o["product"])
        subs: list[DeviceCredentials] = []
        if kind == "gateway" and o["subdevices"]:
            keys = [f"{o['key']}-sub{i:04d}" for i in range(o["subdevices"])]
            subs = platform.create_devices(o["subdevice_product"], keys, "s")
            platform.add_subdevices(DeviceCredentials(o["product"], o["key"], o["secret"]), subs)
        # Kept open: a refused CONNECT's reason is read from the device's log.
        reasons = RefusalReasons(platform, o["product"], o["key"])
        return asyncio.run(_simulate(kind, o, host, port, tsl, subs, reasons))
    except (PlatformError, ScenarioError) as exc:
        raise Failure(str(exc)) from None
    finally:
        platform.close()


def _tls(o: dict[str, Any]) -> ssl.SSLContext | None:
    if o["ca"] is None:
        return None
    context = ssl.create_default_context(cafile=str(o["ca"]))
    if o["cert"] is not None:
        context.load_cert_chain(str(o["cert"]), str(o["key_file"]))
    return context


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


def _print_packet(direction: str, topic: str, payload: bytes) -> None:
    arrow = ">" if direction == "sent" else "<"
    shown = payload.decode(errors="backslashreplace")
    click.echo(f"{arrow} {topic} {shown}", err=True)


async def _connect(device: SimDevice, attempts: int, reasons: RefusalReasons) -> bool:
    """Connect within `attempts`, saying on stderr why each attempt failed."""
    await reasons.start()

    async def failed(attempt: int, error: ConnectRefused | OSError) -> None:
        if isinstance(error, ConnectRefused):
            why = await reasons.explain()
            said = f"; the platform says: {why}" if why else ""
            line = f"CONNECT {attempt} of {attempts} refused: CONNACK {error.code}{said}"
        else:
            line = f"CONNECT {attempt} of {attempts} to {device.host}:{device.port} failed: {error}"
        print(f"gatehouse: {line}", file=sys.stderr, flush=True)

    try:
        await device.connect_with_backoff(attempts, on_failure=failed)
    except (ConnectRefused, OSError):
        tries = "1 attempt" if attempts == 1 else f"{attempts} attempts"
        print(f"gatehouse: gave up after {tries}", file=sys.stderr)
        return False
    return True


async def _simulate(
    kind: str,
    o: dict[str, Any],
    host: str,
    port: int,
    tsl: dict[str, object],
    subs: list[DeviceCredentials],
    reasons: RefusalReasons,
) -> int:
    creds = DeviceCredentials(
        o["product"], o["key"], o["secret"], bool(o.get("activate")), dialect_named(o["dialect"])
    )
    verbose = _print_packet if o["verbose"] else None
    sim_device: SimDevice
    if kind == "gateway":
        sim_device = SimGateway(creds, subs, host, port, tls=_tls(o), verbose=verbose)
    else:
        sim_device = SimDevice(
            creds,
            host,
            port,
            tls=_tls(o),
            on_secret=lambda secret: print(f"activated: DeviceSecret {secret}", flush=True),
            raw=_raw_frames(o["payload_script"]),
            verbose=verbose,
        )
    values = ModelValues(tsl)
    if not await _connect(sim_device, o["max_attempts"], reasons):
        return 1
    targets: list[DeviceCredentials | None] = [None]
    if isinstance(sim_device, SimGateway):
        await sim_device.login_all()
        targets = [*subs] or [None]
    loop = asyncio.get_running_loop()
    stop_at = loop.time() + o["duration"]
    try:
        for n in range(int(o["duration"] * o["rate"])):
            if loop.time() > stop_at:
                break
            sub = targets[n % len(targets)]
            reply = await sim_device.post(
                values.next(),
                qos=o["qos"],
                product_key=sub.product_key if sub else "",
                device_key=sub.device_key if sub else "",
            )
            print(orjson.dumps(reply).decode() if reply is not None else "no reply", flush=True)
            await asyncio.sleep(1 / o["rate"])
    finally:
        await sim_device.close()
    stats = sim_device.stats
    print(
        f"sent {stats.sent}, replied {stats.replied}, faults {stats.faults},"
        f" commands answered {stats.commands}",
        file=sys.stderr,
    )
    return 0
