"""The load runner: provision devices through the API, connect them at a given ramp,
publish measurepoint posts at a given aggregate rate, and report what it measured.

Everything is bounded: the connect phase by a deadline, the publish phase by its
duration (it ends early, saying so, when no device is left connected), the posts in
flight by `max_in_flight`, the latencies by HDR histograms (`simulators.latency`).
Ctrl-C stops it with the report of what was done so far. A report carries its
histograms, every setting of the run and a row per interval (`series`), so reports of
several workers, shards or machines merge exactly (`merge`).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import resource
import signal
import ssl
import sys
import time
import uuid
from collections import Counter, deque
from collections.abc import Coroutine
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from broker.protocol.dialects import DEFAULT, dialect_named
from simulators.device import ConnectRefused, DeviceCredentials, SimDevice
from simulators.gateway import SimGateway
from simulators.latency import Latency
from simulators.platform import OrgCredentials, Platform, PlatformError
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
REASONS_ASKED = 50  # refused devices whose reason is read from the platform's log
CLEANUP_THREADS = 8


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
    dialect: str = DEFAULT.name  # how the devices sign in and post (a dialect's name)
    tls: bool = False  # MQTT over TLS
    ca_file: str = ""  # the CA to trust with `tls` (else the system's)
    cleanup: bool = False  # delete what the run provisioned, at its end
    series_interval: float = 1.0  # seconds a row of the time series covers
    shard: tuple[int, int] = (1, 1)  # this runner is shard K of N
    run_id: str = ""  # the tag of what the run provisions; one per run, for its workers
    # Sleeping devices (NB-IoT on China Telecom AEP), of products of their own, outside
    # the --rate rotation: PSM ones wake every psm_cycle s, post once, stay up psm_awake s
    # and disconnect; eDRX ones stay connected and post once every edrx_cycle s.
    psm_share: float = 0.0
    psm_cycle: float = 60.0  # EnOS's connect limit allows 4 CONNECTs in 120 s
    psm_awake: float = 2.0
    edrx_share: float = 0.0
    edrx_cycle: float = 20.48  # the shortest eDRX cycle a product may have
    subscribe_replies: bool = False  # for a broker that does not subscribe devices itself

    def settings(self) -> dict[str, Any]:
        """Every setting of the run, for the report (the devices' count, not secrets)."""
        found = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "credentials"}
        found["credentials"] = len(self.credentials)
        found["shard"] = f"{self.shard[0]}/{self.shard[1]}"
        return found

    def tls_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        return ssl.create_default_context(cafile=self.ca_file or None)


def shard_of(config: LoadConfig, index: int, count: int) -> LoadConfig:
    """The `index`-th (from 0) of `count` equal parts of a run: its devices, gateways,
    rate and ramp, and every count-th row of a credentials file, so parts never overlap."""

    def share(total: int) -> int:
        return total // count + (1 if index < total % count else 0)

    return replace(
        config,
        devices=share(config.devices),
        credentials=config.credentials[index::count],
        gateways=share(config.gateways),
        rate=config.rate / count,
        ramp=config.ramp / count,
    )


@dataclass(slots=True)
class LoadReport:
    devices: int = 0
    connected: int = 0
    connect_seconds: float = 0.0
    connects_per_s: float = 0.0
    connect_latency_ms: dict[str, float] = field(default_factory=dict)  # CONNECT to CONNACK
    failures: dict[str, int] = field(default_factory=dict)  # connect failures by reason
    refusal_reasons: dict[str, int] = field(default_factory=dict)  # the platform's words
    sent: int = 0
    replied: int = 0
    unanswered: int = 0
    reply_codes: dict[str, int] = field(default_factory=dict)
    skipped: int = 0  # posts not sent because too many were in flight
    publish_seconds: float = 0.0
    sent_per_s: float = 0.0
    latency_ms: dict[str, float] = field(default_factory=dict)  # p50, p90, p99, max
    runner_cpu_percent: float = 0.0  # of one core, over the whole run (summed over workers)
    # CPU seconds of each phase (posting with its replies): a core's connects and posts
    # a second are connected / connect_cpu_seconds and sent / publish_cpu_seconds.
    connect_cpu_seconds: float = 0.0
    publish_cpu_seconds: float = 0.0
    workers: int = 1
    interrupted: bool = False
    stopped: str = ""  # why the posting ended before --duration, if it did
    cleaned_up: str = ""  # what --cleanup deleted, or why it could not
    settings: dict[str, Any] = field(default_factory=dict)
    gatehouse_version: str = ""  # of the runner
    shards: list[str] = field(default_factory=list)  # the K/N of each merged report
    series: list[dict[str, Any]] = field(default_factory=list)  # a row per interval
    histograms: dict[str, str] = field(default_factory=dict)  # encoded, for merging
    # "PSM" and "eDRX": {"devices", "wakes" (PSM), "posts"}, for the modes the run had
    sleepers: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def error_rate(self) -> float:
        """The share of posts sent that got no 200 reply (unanswered, or another code)."""
        if not self.sent:
            return 0.0
        return max(self.sent - self.reply_codes.get("200", 0), 0) / self.sent

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["error_rate"] = round(self.error_rate, 6)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoadReport:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def table(self) -> str:
        def ms(values: dict[str, float]) -> str:
            shown = [f"{k} {values[k]:g} ms" for k in ("p50", "p90", "p99", "max") if k in values]
            return " / ".join(shown) or "-"

        def counts(values: dict[str, int]) -> str:
            return ", ".join(f"{k}: {v}" for k, v in values.items()) or "none"

        rows = [
            ("devices connected", f"{self.connected} of {self.devices}"),
            ("connect rate", f"{self.connects_per_s:g}/s over {self.connect_seconds:g} s"),
            ("connect latency", ms(self.connect_latency_ms)),
            ("connect failures", counts(self.failures)),
        ]
        if self.refusal_reasons:
            rows.append(("refused because", counts(self.refusal_reasons)))
        rows += [
            ("posts sent", f"{self.sent} ({self.sent_per_s:g}/s over {self.publish_seconds:g} s)"),
            ("replied", f"{self.replied}; unanswered {self.unanswered}; skipped {self.skipped}"),
            ("reply codes", counts(dict(sorted(self.reply_codes.items())))),
            ("error rate", f"{100 * self.error_rate:.3g}% of posts without a 200 reply"),
            ("latency", ms(self.latency_ms)),
            (
                "runner CPU",
                f"{self.runner_cpu_percent:g}% of one core; {self.connect_cpu_seconds:g} s"
                f" connecting, {self.publish_cpu_seconds:g} s posting",
            ),
        ]
        if self.sleepers:
            rows.append(("sleeping devices", _sleepers_text(self.sleepers)))
        if self.shards:
            rows.append(("shards", ", ".join(self.shards)))
        if self.cleaned_up:
            rows.append(("cleanup", self.cleaned_up))
        if self.stopped:
            rows.append(("stopped", self.stopped))
        if self.interrupted:
            rows.append(("note", "interrupted: the figures cover what was done"))
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name.ljust(width)}  {value}" for name, value in rows)


def _sleepers_text(sleepers: dict[str, dict[str, int]]) -> str:
    def one(mode: str, counts: dict[str, int]) -> str:
        wakes = f"{counts['wakes']} wakes, " if "wakes" in counts else ""
        return f"{mode} {counts['devices']}: {wakes}{counts['posts']} posts"

    return "; ".join(one(mode, counts) for mode, counts in sleepers.items())


Sender = tuple[SimDevice, DeviceCredentials | None]  # who posts, and for which sub-device


@dataclass(slots=True)
class _Fleet:
    devices: list[SimDevice]
    senders: list[Sender]
    models: dict[str, dict[str, Any]] = field(default_factory=dict)  # ProductKey -> TSL
    publish: Latency = field(default_factory=Latency)  # post to reply, the whole run
    interval: Latency = field(default_factory=Latency)  # the same, this series interval
    connect: Latency = field(default_factory=Latency)  # CONNECT to CONNACK
    connect_failures: int = 0
    psm: list[SimDevice] = field(default_factory=list)
    edrx: list[SimDevice] = field(default_factory=list)

    def record(self, milliseconds: float) -> None:
        self.publish.record_ms(milliseconds)
        self.interval.record_ms(milliseconds)


@dataclass(slots=True)
class Provisioned:
    """What a run created, so --cleanup can delete it (sub-devices first)."""

    products: list[str] = field(default_factory=list)
    devices: list[DeviceCredentials] = field(default_factory=list)
    own_devices: bool = False  # the devices were created, not read from a file
    subdevices: list[DeviceCredentials] = field(default_factory=list)
    gateways: list[tuple[DeviceCredentials, list[DeviceCredentials]]] = field(default_factory=list)
    sleep_modes: dict[tuple[str, str], str] = field(default_factory=dict)  # key -> PSM, eDRX


def sleeping_counts(config: LoadConfig) -> tuple[int, int]:
    """How many of the run's devices are PSM and eDRX ones."""
    return int(config.devices * config.psm_share), int(config.devices * config.edrx_share)


def sleeping_product(mode: str, config: LoadConfig) -> dict[str, Any]:
    """The product settings of sleeping devices: NB-IoT on China Telecom AEP, the only
    platform whose products choose a power-saving mode."""
    saving: dict[str, Any] = {"mode": mode}
    if mode == "eDRX":
        saving["edrxCycle"] = config.edrx_cycle
    return {
        "networkMethod": "NB-IoT",
        "connectedPlatform": "ChinaTelecomAEP",
        "powerSaving": saving,
    }


def provision(platform: Platform, config: LoadConfig, made: Provisioned) -> None:
    """A product (and for gateways, a gateway and a sub-device product) and devices, or
    the devices of a credentials file. What is created is noted in `made` as it is."""
    run = config.run_id or uuid.uuid4().hex[:8]
    part = f"{run}k{config.shard[0]}" if config.shard[1] > 1 else run
    made.devices = list(config.credentials[: config.devices])
    if config.credentials and not config.gateways:
        return
    platform.ensure_model(LOAD_MODEL, LOAD_TSL)
    if config.devices and not made.devices:
        made.own_devices = True
        psm, edrx = sleeping_counts(config)
        for prefix, mode, count in (
            ("", "", config.devices - psm - edrx),
            ("psm-", "PSM", psm),
            ("edrx-", "eDRX", edrx),
        ):
            if not count:
                continue
            settings = sleeping_product(mode, config) if mode else {}
            product = platform.create_product(f"load-{prefix}{part}", LOAD_MODEL, **settings)
            made.products.append(product)
            letter = (prefix or "d")[0]
            keys = [f"{letter}{part}{i:06d}" for i in range(count)]
            created = platform.create_devices(product, keys, "s")
            made.devices.extend(created)
            made.sleep_modes.update({(d.product_key, d.device_key): mode for d in created if mode})
    if config.gateways:
        gw_product = platform.create_product(f"load-gw-{part}", LOAD_MODEL, deviceType="gateway")
        made.products.append(gw_product)
        sub_product = platform.create_product(
            f"load-sub-{part}", LOAD_MODEL, deviceType="subdevice"
        )
        made.products.append(sub_product)
        gw_keys = [f"g{part}{i:04d}" for i in range(config.gateways)]
        for gateway in platform.create_devices(gw_product, gw_keys, "s"):
            keys = [f"{gateway.device_key}s{j:05d}" for j in range(config.subdevices_per_gateway)]
            subs = platform.create_devices(sub_product, keys, "s") if keys else []
            made.subdevices.extend(subs)
            if subs:
                platform.add_subdevices(gateway, subs)
            made.gateways.append((gateway, subs))


def cleanup(platform: Platform, made: Provisioned) -> str:
    """Delete what `provision` created (never the devices of a credentials file)."""
    created = made.devices if made.own_devices else []
    doomed = [*made.subdevices, *created, *(gw for gw, _ in made.gateways)]
    failed: Counter[str] = Counter()

    def delete(device: DeviceCredentials) -> None:
        try:
            platform.call(
                "devices", "delete", productKey=device.product_key, deviceKey=device.device_key
            )
        except PlatformError as exc:
            failed[str(exc)] += 1

    for gateway, subs in made.gateways:
        if subs:
            try:
                platform.remove_subdevices(gateway, subs)
            except PlatformError as exc:
                failed[str(exc)] += 1
    with ThreadPoolExecutor(CLEANUP_THREADS) as pool:
        list(pool.map(delete, doomed))
    for product in made.products:
        try:
            platform.call("products", "delete", productKey=product)
        except PlatformError as exc:
            failed[str(exc)] += 1
    said = f"deleted {len(doomed) - sum(failed.values())} devices, {len(made.products)} products"
    if failed:
        said += "; failed: " + ", ".join(f"{k} ({v})" for k, v in failed.most_common(3))
    return said


async def run_load(platform: Platform, config: LoadConfig) -> LoadReport:
    report = LoadReport(devices=config.devices + config.gateways, settings=config.settings())
    report.shards = [report.settings["shard"]] if config.shard[1] > 1 else []
    cpu_start = _cpu_seconds()
    wall_start = time.monotonic()
    made = Provisioned()
    fleet = _Fleet([], [])
    try:
        await asyncio.to_thread(provision, platform, config, made)
        await _run(report, fleet, platform, config, made)
    except asyncio.CancelledError:
        report.interrupted = True
    finally:
        _collect(report, fleet)
        elapsed = time.monotonic() - wall_start
        report.runner_cpu_percent = round(
            100 * (_cpu_seconds() - cpu_start) / max(elapsed, 1e-9), 1
        )
        await asyncio.gather(*(d.close() for d in fleet.devices), return_exceptions=True)
        if config.cleanup:
            report.cleaned_up = await asyncio.to_thread(cleanup, platform, made)
    return report


async def _run(
    report: LoadReport, fleet: _Fleet, platform: Platform, config: LoadConfig, made: Provisioned
) -> None:
    wrong = int(len(made.devices) * config.wrong_secret_share)
    for product_key in {d.product_key for d in config.credentials[: config.devices]}:
        # Exported devices post what their own product's thing model describes.
        fleet.models[product_key] = await asyncio.to_thread(platform.thing_model, product_key)
    tls = config.tls_context()
    dialect = dialect_named(config.dialect)
    for index, creds in enumerate(made.devices):
        if index < wrong:
            creds = DeviceCredentials(
                creds.product_key, creds.device_key, "wrong-secret-on-purpose"
            )
        mode = made.sleep_modes.get((creds.product_key, creds.device_key))
        creds = replace(creds, dialect=dialect)
        device = SimDevice(
            creds,
            config.host,
            config.mqtt_port,
            tls=tls,
            keepalive=300,
            on_latency=fleet.record,
            subscribe_replies=config.subscribe_replies,
        )
        fleet.devices.append(device)
        if mode == "PSM":
            fleet.psm.append(device)
        elif mode == "eDRX":
            fleet.edrx.append(device)
    sim_gateways = [
        SimGateway(
            replace(gw, dialect=dialect),
            subs,
            config.host,
            config.mqtt_port,
            tls=tls,
            keepalive=300,
            on_latency=fleet.record,
        )
        for gw, subs in made.gateways
    ]
    fleet.devices.extend(sim_gateways)
    ticker = asyncio.create_task(_tick(report, fleet, config))
    try:
        await _connect_all(report, fleet, config)
        await _refusal_reasons(report, fleet, platform)
        await _storm(report, fleet, config)
        for gateway in sim_gateways:
            if gateway.connected:
                await gateway.login_all()
                fleet.senders.extend((gateway, sub) for sub in gateway.subdevices)
        sleepers = {id(d) for d in (*fleet.psm, *fleet.edrx)}
        fleet.senders.extend(
            (d, None)
            for d in fleet.devices
            if d.connected and not isinstance(d, SimGateway) and id(d) not in sleepers
        )
        started, cpu = time.monotonic(), _cpu_seconds()
        try:
            await asyncio.gather(_publish(report, fleet, config), _sleep(report, fleet, config))
        finally:
            # The time it posted (Ctrl-C too): not the wait for the last replies after
            # --duration, which would understate the rate when replies are slow.
            posted = min(time.monotonic() - started, config.duration)
            report.publish_seconds = round(posted, 2)
            report.publish_cpu_seconds = round(_cpu_seconds() - cpu, 2)
    finally:
        ticker.cancel()
        if config.progress:
            print(file=sys.stderr)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _connect_all(report: LoadReport, fleet: _Fleet, config: LoadConfig) -> None:
    failures: Counter[str] = Counter()
    started, cpu = time.monotonic(), _cpu_seconds()
    deadline = started + config.connect_deadline
    gate = asyncio.Semaphore(CONNECTS_IN_FLIGHT)

    async def join(index: int, device: SimDevice) -> None:
        # The ramp: the index-th CONNECT starts no earlier than index / ramp seconds in.
        await asyncio.sleep(max(started + index / config.ramp - time.monotonic(), 0))
        if time.monotonic() > deadline:
            failures["connect deadline passed"] += 1
            return
        async with gate:
            began = time.perf_counter()
            try:
                await asyncio.wait_for(device.connect(), 30)
            except ConnectRefused as exc:
                failures[f"refused (CONNACK {exc.code})"] += 1
            except TimeoutError:
                failures["no CONNACK within 30 s"] += 1
            except (OSError, ssl.SSLError) as exc:
                failures[f"connection error: {type(exc).__name__}: {exc}"[:120]] += 1
            else:
                fleet.connect.record_ms((time.perf_counter() - began) * 1000)
            fleet.connect_failures = sum(failures.values())

    try:
        await asyncio.gather(*(join(i, d) for i, d in enumerate(fleet.devices)))
    finally:  # Ctrl-C too: the rate is of what was done
        elapsed = time.monotonic() - started
        report.connect_seconds = round(elapsed, 3)  # a small fleet connects in ms
        report.connect_cpu_seconds = round(_cpu_seconds() - cpu, 2)
        report.connected = sum(d.connected for d in fleet.devices)
        report.connects_per_s = round(report.connected / max(elapsed, 1e-3), 1)
        report.failures = dict(failures)


async def _refusal_reasons(report: LoadReport, fleet: _Fleet, platform: Platform) -> None:
    """Why the platform refused: CONNACK says only 5, the device's log says more. Read
    for at most REASONS_ASKED refused devices (the rest are counted by CONNACK code)."""
    refused = [d for d in fleet.devices if d.stats.refused][:REASONS_ASKED]
    if not refused:
        return

    def ask() -> Counter[str]:
        reasons: Counter[str] = Counter()
        for device in refused:
            try:
                entry = platform.newest_refusal(*device.key)
            except PlatformError as exc:
                reasons[str(exc).partition(": ")[2] or str(exc)] += 1
                continue
            if entry is not None:
                detail = entry.get("detail") or "refused"
                code = entry.get("code")
                reasons[f"{detail} ({code})" if code is not None else detail] += 1
        return reasons

    report.refusal_reasons = dict(await asyncio.to_thread(ask))


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
    if not fleet.senders and not any(d.connected for d in fleet.devices):
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
    # The time it posted is measured by `_run`, around this and the sleepers.
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
    if in_flight and report.stopped:
        # Their connections are gone: no reply can come.
        for task in in_flight:
            task.cancel()
    if in_flight:
        await asyncio.wait(in_flight, timeout=10)


async def _sleep(report: LoadReport, fleet: _Fleet, config: LoadConfig) -> None:
    """The sleeping devices for --duration. A PSM device's first wake is its CONNECT of
    the connect phase; then every psm_cycle s it connects again (those CONNECTs count in
    the connect latency, their failures by reason), posts once, stays up psm_awake s,
    which is when the platform sends what it held for it, and disconnects. An eDRX
    device stays connected and posts once a cycle, the devices spread over the cycle."""
    if not fleet.psm and not fleet.edrx:
        return
    values = ModelValues(LOAD_TSL, seed=11)
    counts = {
        mode: {"devices": len(devices), "posts": 0}
        for mode, devices in (("PSM", fleet.psm), ("eDRX", fleet.edrx))
        if devices
    }
    if fleet.psm:
        counts["PSM"]["wakes"] = 0
    report.sleepers = counts
    failures: Counter[str] = Counter()
    start = time.monotonic()
    end = start + config.duration

    async def post(device: SimDevice, mode: str) -> None:
        counts[mode]["posts"] += 1
        await device.post(values.next(), qos=config.qos)

    async def wake(device: SimDevice) -> bool:
        began = time.perf_counter()
        try:
            await asyncio.wait_for(device.connect(), 30)
        except ConnectRefused as exc:
            failures[f"PSM wake: refused (CONNACK {exc.code})"] += 1
        except (TimeoutError, OSError, ssl.SSLError) as exc:
            failures[f"PSM wake: {type(exc).__name__}"] += 1
        else:
            fleet.connect.record_ms((time.perf_counter() - began) * 1000)
            return True
        return False

    async def psm(device: SimDevice) -> None:
        woke_at, first = time.monotonic(), True
        while True:
            if device.connected or (not first and await wake(device)):
                counts["PSM"]["wakes"] += 1
                await post(device, "PSM")
                await asyncio.sleep(max(min(config.psm_awake, end - time.monotonic()), 0))
                await device.close()
            first, woke_at = False, woke_at + config.psm_cycle
            if woke_at >= end:
                return
            await asyncio.sleep(woke_at - time.monotonic())

    async def edrx(device: SimDevice, offset: float) -> None:
        due = start + offset
        while due < end:
            await asyncio.sleep(max(due - time.monotonic(), 0))
            if device.connected:
                await post(device, "eDRX")
            due += config.edrx_cycle

    spread = config.edrx_cycle / max(len(fleet.edrx), 1)
    try:
        await asyncio.gather(
            *(psm(d) for d in fleet.psm),
            *(edrx(d, i * spread) for i, d in enumerate(fleet.edrx)),
        )
    finally:
        failures.update(report.failures)
        report.failures = dict(failures)


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
    codes: Counter[str] = Counter()
    report.sent = report.replied = report.unanswered = 0
    for device in fleet.devices:
        stats = device.stats
        report.sent += stats.sent
        report.replied += stats.replied
        report.unanswered += stats.unanswered
        codes.update(stats.reply_codes)
    report.reply_codes = dict(codes)
    report.latency_ms = fleet.publish.percentiles()
    report.connect_latency_ms = fleet.connect.percentiles()
    report.histograms = {"publish": fleet.publish.encode(), "connect": fleet.connect.encode()}
    if report.publish_seconds:
        report.sent_per_s = round(report.sent / report.publish_seconds, 1)


async def _tick(report: LoadReport, fleet: _Fleet, config: LoadConfig) -> None:
    """Every interval: a row of the series, and the progress line when asked for."""
    started = last_at = time.monotonic()
    last = {"sent": 0, "replied": 0, "errors": 0}
    terminal = sys.stderr.isatty()
    while True:
        await asyncio.sleep(config.series_interval)
        now = time.monotonic()
        devices = fleet.devices
        totals = {
            "sent": sum(d.stats.sent for d in devices),
            "replied": sum(d.stats.replied for d in devices),
            "errors": fleet.connect_failures
            + sum(d.stats.faults + d.stats.unanswered for d in devices),
        }
        latency = fleet.interval.percentiles()
        fleet.interval.reset()
        row: dict[str, Any] = {
            "t": round(now - started, 2),
            "connected": sum(d.connected for d in devices),
            **{k: totals[k] - last[k] for k in totals},
            "p50": latency.get("p50"),
            "p99": latency.get("p99"),
        }
        report.series.append(row)
        if config.progress:
            rate = row["sent"] / max(now - last_at, 1e-9)
            line = (
                f"connected {row['connected']}/{len(devices)}  sent {totals['sent']}"
                f" ({rate:.0f}/s)  errors {totals['errors']}"
            )
            # A terminal gets one line redrawn; a log gets a line per interval.
            print(
                f"\r{line}   " if terminal else line,
                end="" if terminal else "\n",
                file=sys.stderr,
                flush=True,
            )
        last, last_at = totals, now


def run(platform: Platform, config: LoadConfig) -> LoadReport:
    """Run a load. Ctrl-C cancels it (asyncio.Runner cancels the main task on SIGINT),
    and `run_load` returns the report of what was done so far."""
    with asyncio.Runner() as runner:
        return runner.run(run_load(platform, config))


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
    config = replace(config, run_id=config.run_id or uuid.uuid4().hex[:8])
    if workers <= 1:
        return _worker(url, creds, config)
    # The workers have a process group of their own, so a terminal's Ctrl-C reaches only
    # this process, which hands it on to each of them exactly once: a second SIGINT would
    # end a worker without its report, and a `kill -INT` of this process alone reached none.
    with ProcessPoolExecutor(workers, initializer=os.setpgrp) as pool:
        parts = [
            replace(shard_of(config, i, workers), progress=False, run_id=f"{config.run_id}w{i}")
            for i in range(workers)
        ]
        futures = [pool.submit(_worker, url, creds, part) for part in parts]
        try:
            reports = [f.result() for f in futures]
        except KeyboardInterrupt:  # each worker stops with the report of what it did
            for child in multiprocessing.active_children():
                if child.pid is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(child.pid, signal.SIGINT)
            reports = [f.result() for f in futures]
    merged = merge(reports)
    merged.settings = config.settings()
    merged.shards = [s for r in reports for s in r.shards]
    return merged


def merge(reports: list[LoadReport]) -> LoadReport:
    """One report of several workers', shards' or machines' reports: counts summed,
    latency percentiles from the sum of their histograms (exact), series row by row."""
    merged = LoadReport(workers=sum(r.workers for r in reports))
    failures: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    codes: Counter[str] = Counter()
    publish, connect = Latency(), Latency()
    rows: dict[int, dict[str, Any]] = {}
    for report in reports:
        merged.devices += report.devices
        merged.connected += report.connected
        merged.sent += report.sent
        merged.replied += report.replied
        merged.unanswered += report.unanswered
        merged.skipped += report.skipped
        merged.runner_cpu_percent += report.runner_cpu_percent
        merged.connect_cpu_seconds += report.connect_cpu_seconds
        merged.publish_cpu_seconds += report.publish_cpu_seconds
        merged.connect_seconds = max(merged.connect_seconds, report.connect_seconds)
        merged.publish_seconds = max(merged.publish_seconds, report.publish_seconds)
        merged.interrupted |= report.interrupted
        merged.stopped = merged.stopped or report.stopped
        merged.cleaned_up = "; ".join(x for x in (merged.cleaned_up, report.cleaned_up) if x)
        merged.shards.extend(report.shards)
        merged.gatehouse_version = merged.gatehouse_version or report.gatehouse_version
        merged.settings = merged.settings or report.settings
        for mode, counts in report.sleepers.items():
            into = merged.sleepers.setdefault(mode, {})
            for name, value in counts.items():
                into[name] = into.get(name, 0) + value
        failures.update(report.failures)
        reasons.update(report.refusal_reasons)
        codes.update(report.reply_codes)
        publish.add(Latency.decode(report.histograms.get("publish", "")))
        connect.add(Latency.decode(report.histograms.get("connect", "")))
        for index, row in enumerate(report.series):
            _add_row(rows.setdefault(index, {}), row)
    merged.failures, merged.reply_codes = dict(failures), dict(codes)
    merged.refusal_reasons = dict(reasons)
    merged.latency_ms, merged.connect_latency_ms = publish.percentiles(), connect.percentiles()
    merged.histograms = {"publish": publish.encode(), "connect": connect.encode()}
    merged.series = [rows[i] for i in sorted(rows)]
    merged.connects_per_s = round(merged.connected / max(merged.connect_seconds, 1e-9), 1)
    if merged.publish_seconds:
        merged.sent_per_s = round(merged.sent / merged.publish_seconds, 1)
    merged.runner_cpu_percent = round(merged.runner_cpu_percent, 1)
    merged.connect_cpu_seconds = round(merged.connect_cpu_seconds, 2)
    merged.publish_cpu_seconds = round(merged.publish_cpu_seconds, 2)
    return merged


def _add_row(into: dict[str, Any], row: dict[str, Any]) -> None:
    """Rows of the same interval: counts add up; an interval's percentiles cannot be
    added, so the merged row keeps the worst of them."""
    for key, value in row.items():
        if key == "t":
            into[key] = max(into.get(key, 0), value)
        elif key in ("p50", "p99"):
            known = [v for v in (into.get(key), value) if v is not None]
            into[key] = max(known) if known else None
        else:
            into[key] = into.get(key, 0) + value
