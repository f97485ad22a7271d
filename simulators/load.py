"""The load runner: provision devices through the API, connect them at a given ramp,
publish measurepoint posts at a given aggregate rate, and report what it measured.

Everything is bounded: the connect phase by a deadline, the publish phase by its
duration (it ends early, saying so, when no device is left connected), the posts in
flight by `max_in_flight`. Ctrl-C stops it with the report of what was done so far.
"""

from __future__ import annotations

import asyncio
import resource
import sys
import time
import uuid
from collections import Counter, deque
from collections.abc import Coroutine
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from simulators.device import ConnectRefused, DeviceCredentials, SimDevice
from simulators.gateway import SimGateway
from simulators.platform import OrgCredentials, Platform
from simulators.values import ModelValues

LOAD_MODEL = "gatehouse-load"
LOAD_TSL = {
    "properties": [
        {
            "identifier": "temp",
            "dataType": {"type": "float", "specs": {"min": "-40", "max": "120"}},
        },
        {
            "identifier": "humidity",
            "dataType": {"type": "int", "specs": {"min": "0", "max": "100"}},
        },
    ]
}
CONNECTS_IN_FLIGHT = 100
MAX_SAMPLES = 500_000  # latencies a worker hands back for the merged percentiles


@dataclass(frozen=True, slots=True)
class LoadConfig:
    devices: int = 100
    gateways: int = 0
    subdevices_per_gateway: int = 0
    rate: float = 100.0  # posts per second, all devices together
    duration: float = 10.0  # seconds of posting
    ramp: float = 500.0  # CONNECTs per second
    qos: int = 1
    host: str = "127.0.0.1"
    mqtt_port: int = 1883
    connect_deadline: float = 120.0
    max_in_flight: int = 10_000
    # Bad behaviour on purpose: devices that connect with a wrong secret, and posts
    # with a value outside the thing model's range.
    wrong_secret_share: float = 0.0
    bad_value_share: float = 0.0
    malformed_share: float = 0.0  # posts that are not JSON (6207 replies)
    reconnect_storm_share: float = 0.0  # devices that reconnect at once, again and again
    storm_reconnects: int = 5
    progress: bool = True
    # Devices exported by `gatehouse device export` to use instead of new ones.
    credentials: tuple[DeviceCredentials, ...] = ()
    dialect: str = "enos"  # how the directly connected devices sign in and post


@dataclass(slots=True)
class LoadReport:
    devices: int = 0
    connected: int = 0
    connect_seconds: float = 0.0
    connects_per_s: float = 0.0
    failures: dict[str, int] = field(default_factory=dict)  # connect failures by reason
    sent: int = 0
    replied: int = 0
    unanswered: int = 0
    reply_codes: dict[str, int] = field(default_factory=dict)
    skipped: int = 0  # posts not sent because too many were in flight
    publish_seconds: float = 0.0
    sent_per_s: float = 0.0
    latency_ms: dict[str, float] = field(default_factory=dict)  # p50, p90, p99, max
    runner_cpu_percent: float = 0.0  # of one core, over the whole run (summed over workers)
    workers: int = 1
    interrupted: bool = False
    stopped: str = ""  # why the posting ended before --duration, if it did
    samples: list[float] = field(default_factory=list, repr=False)  # latencies, for merging

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        del data["samples"]
        return data

    def table(self) -> str:
        latency = self.latency_ms
        rows = [
            ("devices connected", f"{self.connected} of {self.devices}"),
            ("connect rate", f"{self.connects_per_s:g}/s over {self.connect_seconds:g} s"),
            (
                "connect failures",
                ", ".join(f"{k}: {v}" for k, v in self.failures.items()) or "none",
            ),
            ("posts sent", f"{self.sent} ({self.sent_per_s:g}/s over {self.publish_seconds:g} s)"),
            ("replied", f"{self.replied}; unanswered {self.unanswered}; skipped {self.skipped}"),
            (
                "reply codes",
                ", ".join(f"{k}: {v}" for k, v in sorted(self.reply_codes.items())) or "none",
            ),
            (
                "latency",
                " / ".join(
                    f"{k} {latency[k]:g} ms" for k in ("p50", "p90", "p99", "max") if k in latency
                )
                or "-",
            ),
            ("runner CPU", f"{self.runner_cpu_percent:g}% of one core"),
        ]
        if self.stopped:
            rows.append(("stopped", self.stopped))
        if self.interrupted:
            rows.append(("note", "interrupted: the figures cover what was done"))
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name.ljust(width)}  {value}" for name, value in rows)


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def at(fraction: float) -> float:
        return round(ordered[max(int(len(ordered) * fraction) - 1, 0)], 2)

    return {"p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "max": round(ordered[-1], 2)}


Sender = tuple[SimDevice, DeviceCredentials | None]  # who posts, and for which sub-device


@dataclass(slots=True)
class _Fleet:
    devices: list[SimDevice]
    senders: list[Sender]
    models: dict[str, dict[str, Any]] = field(default_factory=dict)  # ProductKey -> TSL


def provision(
    platform: Platform, config: LoadConfig
) -> tuple[list[DeviceCredentials], list[tuple[DeviceCredentials, list[DeviceCredentials]]]]:
    """A product (and for gateways, a gateway and a sub-device product) and devices, or
    the devices of a credentials file."""
    run = uuid.uuid4().hex[:8]
    devices: list[DeviceCredentials] = list(config.credentials[: config.devices])
    if config.credentials and not config.gateways:
        return devices, []
    platform.ensure_model(LOAD_MODEL, LOAD_TSL)
    if config.devices and not devices:
        product = platform.create_product(f"load-{run}", LOAD_MODEL)
        devices = platform.create_devices(
            product, [f"d{run}{i:06d}" for i in range(config.devices)], "s"
        )
    gateways: list[tuple[DeviceCredentials, list[DeviceCredentials]]] = []
    if config.gateways:
        gw_product = platform.create_product(f"load-gw-{run}", LOAD_MODEL, deviceType="gateway")
        sub_product = platform.create_product(f"load-sub-{run}", LOAD_MODEL, deviceType="subdevice")
        gw_keys = [f"g{run}{i:04d}" for i in range(config.gateways)]
        for gateway in platform.create_devices(gw_product, gw_keys, "s"):
            keys = [f"{gateway.device_key}s{j:05d}" for j in range(config.subdevices_per_gateway)]
            subs = platform.create_devices(sub_product, keys, "s") if keys else []
            if subs:
                platform.add_subdevices(gateway, subs)
            gateways.append((gateway, subs))
    return devices, gateways


async def run_load(platform: Platform, config: LoadConfig) -> LoadReport:
    report = LoadReport(devices=config.devices + config.gateways)
    cpu_start = _cpu_seconds()
    wall_start = time.monotonic()
    try:
        devices, gateways = await asyncio.to_thread(provision, platform, config)
    except asyncio.CancelledError:
        report.interrupted = True
        return report
    wrong = int(len(devices) * config.wrong_secret_share)
    fleet = _Fleet([], [])
    for product_key in {d.product_key for d in config.credentials[: config.devices]}:
        # Exported devices post what their own product's thing model describes.
        fleet.models[product_key] = await asyncio.to_thread(platform.thing_model, product_key)
    for index, creds in enumerate(devices):
        if index < wrong:
            creds = DeviceCredentials(
                creds.product_key, creds.device_key, "wrong-secret-on-purpose"
            )
        fleet.devices.append(SimDevice(creds, config.host, config.mqtt_port, keepalive=300))
    sim_gateways = [
        SimGateway(gw, subs, config.host, config.mqtt_port, keepalive=300) for gw, subs in gateways
    ]
    fleet.devices.extend(sim_gateways)
    progress = asyncio.create_task(_progress(report, fleet)) if config.progress else None
    try:
        await _connect_all(report, fleet, config)
        await _storm(report, fleet, config)
        for gateway in sim_gateways:
            if gateway.connected:
                await gateway.login_all()
                fleet.senders.extend((gateway, sub) for sub in gateway.subdevices)
        fleet.senders.extend(
            (d, None) for d in fleet.devices if d.connected and not isinstance(d, SimGateway)
        )
        await _publish(report, fleet, config)
    except asyncio.CancelledError:
        report.interrupted = True
    finally:
        if progress is not None:
            progress.cancel()
        _collect(report, fleet)
        elapsed = time.monotonic() - wall_start
        report.runner_cpu_percent = round(
            100 * (_cpu_seconds() - cpu_start) / max(elapsed, 1e-9), 1
        )
        await asyncio.gather(*(d.close() for d in fleet.devices), return_exceptions=True)
    return report


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _connect_all(report: LoadReport, fleet: _Fleet, config: LoadConfig) -> None:
    failures: Counter[str] = Counter()
    started = time.monotonic()
    deadline = started + config.connect_deadline
    gate = asyncio.Semaphore(CONNECTS_IN_FLIGHT)

    async def join(index: int, device: SimDevice) -> None:
        # The ramp: the index-th CONNECT starts no earlier than index / ramp seconds in.
        await asyncio.sleep(max(started + index / config.ramp - time.monotonic(), 0))
        if time.monotonic() > deadline:
            failures["connect deadline passed"] += 1
            return
        async with gate:
            try:
                await asyncio.wait_for(device.connect(), 30)
            except ConnectRefused as exc:
                failures[f"refused (CONNACK {exc.code})"] += 1
            except TimeoutError:
                failures["no CONNACK within 30 s"] += 1
            except OSError as exc:
                failures[f"connection error: {type(exc).__name__}"] += 1

    await asyncio.gather(*(join(i, d) for i, d in enumerate(fleet.devices)))
    elapsed = time.monotonic() - started
    report.connect_seconds = round(elapsed, 2)
    report.connected = sum(d.connected for d in fleet.devices)
    report.connects_per_s = round(report.connected / max(elapsed, 1e-3), 1)
    report.failures = dict(failures)


async def _storm(report: LoadReport, fleet: _Fleet, config: LoadConfig) -> None:
    """Bad behaviour: some devices drop and reconnect at once, `storm_reconnects` times.
    The platform's per-device connect limit refuses most of those CONNECTs."""
    count = int(len(fleet.devices) * config.reconnect_storm_share)
    stormers = [d for d in fleet.devices if d.connected][:count]
    failures: Counter[str] = Counter(report.failures)

    async def storm(device: SimDevice) -> None:
        for _ in range(config.storm_reconnects):
            await device.close()
            try:
                await asyncio.wait_for(device.connect(), 30)
            except ConnectRefused as exc:
                failures[f"storm: refused (CONNACK {exc.code})"] += 1
            except (TimeoutError, OSError) as exc:
                failures[f"storm: {type(exc).__name__}"] += 1

    await asyncio.gather(*(storm(d) for d in stormers))
    report.failures = dict(failures)
    report.connected = sum(d.connected for d in fleet.devices)


async def _publish(report: LoadReport, fleet: _Fleet, config: LoadConfig) -> None:
    if not fleet.senders and fleet.devices:
        report.stopped = "no device connected"
    if not fleet.senders or config.rate <= 0:
        return
    default = ModelValues(LOAD_TSL, seed=7)
    by_product = {pk: ModelValues(tsl, seed=7) for pk, tsl in fleet.models.items()}
    bad_every = int(1 / config.bad_value_share) if config.bad_value_share > 0 else 0
    malformed_every = int(1 / config.malformed_share) if config.malformed_share > 0 else 0
    in_flight: set[asyncio.Task[Any]] = set()
    senders = deque(fleet.senders)
    started = time.monotonic()
    sent = 0
    try:
        while (now := time.monotonic()) - started < config.duration:
            due = int((now - started) * config.rate)
            while sent < due:
                if len(in_flight) >= config.max_in_flight:
                    report.skipped += due - sent
                    sent = due
                    break
                found = _next_connected(senders)
                if found is None:
                    report.stopped = "every device was disconnected while posting"
                    break
                device, sub = found
                product_key = sub.product_key if sub is not None else device.creds.product_key
                points = by_product.get(product_key, default).next()
                if bad_every and sent % bad_every == 0:
                    points["temp"] = 10_000.0  # outside the model's range: a 460 reply
                malformed = malformed_every and sent % malformed_every == 1 % malformed_every
                coro = _one_post(device, sub, points, qos=config.qos, malformed=bool(malformed))
                task = asyncio.create_task(coro)
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
                sent += 1
            if report.stopped:
                break
            await asyncio.sleep(0.01)
    finally:  # Ctrl-C too: the rate is of what was done
        report.publish_seconds = round(time.monotonic() - started, 2)
    if in_flight and report.stopped:
        # Their connections are gone: no reply can come.
        for task in in_flight:
            task.cancel()
    if in_flight:
        await asyncio.wait(in_flight, timeout=10)


def _one_post(
    device: SimDevice,
    sub: DeviceCredentials | None,
    points: dict[str, Any],
    *,
    qos: int,
    malformed: bool,
) -> Coroutine[Any, Any, dict[str, Any] | None]:
    product_key, device_key = (sub.product_key, sub.device_key) if sub else ("", "")
    if malformed:
        return device.malformed(product_key, device_key)
    return device.post(points, qos=qos, product_key=product_key, device_key=device_key)


def _next_connected(senders: deque[Sender]) -> Sender | None:
    """The next sender in turn whose device is connected, or None when none is. A
    simulated device does not reconnect, so one found disconnected leaves the turn."""
    while senders:
        sender = senders.popleft()
        if sender[0].connected:
            senders.append(sender)
            return sender
    return None


def _collect(report: LoadReport, fleet: _Fleet) -> None:
    latencies: list[float] = []
    codes: Counter[str] = Counter()
    for device in fleet.devices:
        stats = device.stats
        report.sent += stats.sent
        report.replied += stats.replied
        report.unanswered += stats.unanswered
        latencies.extend(stats.latencies_ms)
        codes.update(stats.reply_codes)
    report.reply_codes = dict(codes)
    report.latency_ms = _percentiles(latencies)
    report.samples = latencies[:MAX_SAMPLES]
    if report.publish_seconds:
        report.sent_per_s = round(report.sent / report.publish_seconds, 1)


async def _progress(report: LoadReport, fleet: _Fleet) -> None:
    last, last_at = 0, time.monotonic()
    while True:
        await asyncio.sleep(1)
        sent = sum(d.stats.sent for d in fleet.devices)
        now = time.monotonic()
        rate = (sent - last) / (now - last_at)
        last, last_at = sent, now
        connected = sum(d.connected for d in fleet.devices)
        refused = sum(d.stats.refused for d in fleet.devices)
        print(
            f"\rconnected {connected}/{len(fleet.devices)}  sent {sent} ({rate:.0f}/s)"
            f"  refused {refused}   ",
            end="",
            file=sys.stderr,
            flush=True,
        )


def run(platform: Platform, config: LoadConfig) -> LoadReport:
    """Run a load. Ctrl-C cancels it (asyncio.Runner cancels the main task on SIGINT),
    and `run_load` returns the report of what was done so far."""
    with asyncio.Runner() as runner:
        return runner.run(run_load(platform, config))


def _slice(config: LoadConfig, index: int, workers: int) -> LoadConfig:
    def share(total: int) -> int:
        return total // workers + (1 if index < total % workers else 0)

    return replace(
        config,
        devices=share(config.devices),
        credentials=config.credentials[index::workers],
        gateways=share(config.gateways),
        rate=config.rate / workers,
        ramp=config.ramp / workers,
        progress=False,
    )


def _worker(url: str, creds: OrgCredentials, config: LoadConfig) -> LoadReport:
    platform = Platform(url, creds)
    try:
        return run(platform, config)
    finally:
        platform.close()


def run_workers(
    url: str, creds: OrgCredentials, config: LoadConfig, workers: int = 1
) -> LoadReport:
    """Spread the devices and the rate over `workers` processes and merge their reports."""
    if workers <= 1:
        return _worker(url, creds, config)
    with ProcessPoolExecutor(workers) as pool:
        futures = [
            pool.submit(_worker, url, creds, _slice(config, i, workers)) for i in range(workers)
        ]
        try:
            reports = [f.result() for f in futures]
        except KeyboardInterrupt:  # the workers got the SIGINT too and end with a report
            reports = [f.result() for f in futures]
    return merge(reports)


def merge(reports: list[LoadReport]) -> LoadReport:
    merged = LoadReport(workers=len(reports))
    failures: Counter[str] = Counter()
    codes: Counter[str] = Counter()
    samples: list[float] = []
    for report in reports:
        merged.devices += report.devices
        merged.connected += report.connected
        merged.sent += report.sent
        merged.replied += report.replied
        merged.unanswered += report.unanswered
        merged.skipped += report.skipped
        merged.runner_cpu_percent += report.runner_cpu_percent
        merged.connect_seconds = max(merged.connect_seconds, report.connect_seconds)
        merged.publish_seconds = max(merged.publish_seconds, report.publish_seconds)
        merged.interrupted |= report.interrupted
        merged.stopped = merged.stopped or report.stopped
        failures.update(report.failures)
        codes.update(report.reply_codes)
        samples.extend(report.samples)
    merged.failures, merged.reply_codes = dict(failures), dict(codes)
    merged.latency_ms = _percentiles(samples)
    merged.connects_per_s = round(merged.connected / max(merged.connect_seconds, 1e-9), 1)
    if merged.publish_seconds:
        merged.sent_per_s = round(merged.sent / merged.publish_seconds, 1)
    merged.runner_cpu_percent = round(merged.runner_cpu_percent, 1)
    return merged
