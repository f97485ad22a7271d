"""Signed EnOS devices on gatehouse against plain pub/sub on stock amqtt 0.12.1, in one run.

For each broker and device count:
- connect storm: N devices CONNECT, 100 in flight. On gatehouse each one is a
  registered device with its own secret and an EnOS-signed CONNECT, admitted with
  the ACL, server-side subscriptions and presence written behind. Stock amqtt gets
  the same CONNECT packets and lets them in anonymously. Reported: connects per
  second, p99 CONNECT-to-CONNACK, and the broker's RSS growth per connection.
- posts (at the smallest N, 1,000 by default): every device sends EnOS measurepoint
  posts, one at a time, each waiting for its answer, for a few seconds, at QoS 0 and
  QoS 1. On gatehouse the answer is the `_reply` after TSL validation with the sinks
  on; on stock amqtt each device subscribes to its own post topic, so the broker
  routes the same message back: the same packets in and out, with nothing checked.
  Reported: round trips per second and their p50 and p99 latency.

    .venv/bin/python benchmarks/devices.py [--devices 1000,5000,10000] [--post-seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import gmqtt
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (
    BENCH_TSL,
    bounded,
    create_devices,
    percentile,
    print_table,
    ratio,
    report,
    rss_kb,
    spare_the_collector,
)
from broker.protocol import encode_request, enos_credentials
from simulators.launch import Gatehouse, StockAmqtt
from simulators.platform import with_mandatory

CONNECTS_IN_FLIGHT = 100
MQTT_311 = 4
log = logging.getLogger("bench")


@dataclass
class Row:
    broker: str
    devices: int
    connected: int = 0
    connects_s: float | None = None
    connect_p99_ms: float | None = None
    rss_per_conn_kb: float | None = None
    qos0_msg_s: float | None = None
    qos0_p50_ms: float | None = None
    qos0_p99_ms: float | None = None
    qos1_msg_s: float | None = None
    qos1_p50_ms: float | None = None
    qos1_p99_ms: float | None = None
    notes: list[str] = field(default_factory=list)


COLUMNS = [
    ("broker", "broker"),
    ("devices", "devices"),
    ("connects_s", "connects/s"),
    ("connect_p99_ms", "CONNECT p99"),
    ("rss_per_conn_kb", "KB/conn"),
    ("qos0_msg_s", "QoS0 msg/s"),
    ("qos0_p50_ms", "QoS0 p50"),
    ("qos0_p99_ms", "QoS0 p99"),
    ("qos1_msg_s", "QoS1 msg/s"),
    ("qos1_p50_ms", "QoS1 p50"),
    ("qos1_p99_ms", "QoS1 p99"),
]


class Device:
    """One simulated device: a gmqtt client with one request in flight at a time."""

    def __init__(self, product_key: str, device_key: str, secret: str, answers_on: str) -> None:
        creds = enos_credentials(product_key, device_key, secret, str(int(time.time() * 1000)))
        self.mqtt = gmqtt.Client(creds.client_id)
        self.mqtt.set_auth_credentials(creds.username, creds.password)
        self.mqtt.on_message = self._on_message
        self.topic = f"/sys/{product_key}/{device_key}/thing/measurepoint/post"
        self.answers_on = answers_on
        self.waiter: asyncio.Future[bytes] | None = None
        self.faults = 0

    def _on_message(self, client: Any, topic: str, payload: bytes, qos: int, props: Any) -> int:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(payload)
        return 0

    async def connect(self, port: int) -> None:
        await self.mqtt.connect("127.0.0.1", port, keepalive=300, version=MQTT_311)

    async def round_trips(self, qos: int, stop_at: float, latencies: list[float]) -> None:
        loop = asyncio.get_running_loop()
        n = 0
        while time.monotonic() < stop_at:
            n += 1
            payload = encode_request(
                str(n),
                "thing.measurepoint.post",
                {"measurepoints": {"temp": 21.5}, "time": int(time.time() * 1000)},
            )
            self.waiter = loop.create_future()
            started = time.perf_counter()
            self.mqtt.publish(self.topic, payload, qos=qos)
            try:
                answer = await asyncio.wait_for(self.waiter, 10)
            except TimeoutError:
                self.faults += 1
                return
            latencies.append((time.perf_counter() - started) * 1000)
            if self.answers_on.endswith("_reply") and b'"code":200' not in answer:
                self.faults += 1


def provision(server: Gatehouse, count: int) -> list[tuple[str, str, str]]:
    """A product and `count` devices with known secrets, through the REST API."""
    api = server.client()
    api("thing-models", "create", {"modelId": "bench", "tsl": BENCH_TSL}).ok()
    product_key: str = api(
        "products", "create", with_mandatory({"productName": "bench", "modelId": "bench"})
    ).ok()
    devices = [(product_key, f"bench{i:05d}", f"benchsecret{i:05d}") for i in range(count)]
    create_devices(api, devices)
    return devices


@contextmanager
def running(broker: str, workdir: Path, count: int) -> Iterator[tuple[int, int, list[Any]]]:
    """Start a broker; yields (mqtt port, pid, device credentials)."""
    if broker == "amqtt":
        stock = StockAmqtt(workdir)  # default config: amqtt's own plugins, anonymous allowed
        stock.start()
        assert stock.process is not None
        devices = [("benchpk", f"bench{i:05d}", f"benchsecret{i:05d}") for i in range(count)]
        try:
            yield stock.port, stock.process.pid, devices
        finally:
            stock.stop()
    else:
        server = Gatehouse(workdir / "data", extra_args=("--log-level", "warning")).start()
        assert server.process is not None
        try:
            yield server.mqtt_port, server.process.pid, provision(server, count)
        finally:
            server.stop()


async def measure(
    broker: str, port: int, pid: int, creds: list[Any], posts: bool, args: argparse.Namespace
) -> Row:
    row = Row(broker, len(creds))
    gatehouse = broker == "gatehouse"
    devices = [
        Device(pk, dk, secret, "_reply" if gatehouse else "echo") for pk, dk, secret in creds
    ]
    rss_before = rss_kb(pid)
    connect_ms: list[float] = []

    async def join(device: Device) -> None:
        started = time.perf_counter()
        await device.connect(port)
        connect_ms.append((time.perf_counter() - started) * 1000)

    started = time.monotonic()
    row.connected = await bounded(
        [partial(join, d) for d in devices],
        started + args.connect_deadline,
        CONNECTS_IN_FLIGHT,
    )
    elapsed = time.monotonic() - started
    if row.connected < len(devices):
        row.notes.append(f"connect: {row.connected} of {len(devices)} in {args.connect_deadline} s")
    row.connects_s = round(row.connected / elapsed)
    row.connect_p99_ms = round(percentile(sorted(connect_ms), 0.99), 1)
    await asyncio.sleep(1)
    row.rss_per_conn_kb = round((rss_kb(pid) - rss_before) / max(row.connected, 1), 1)

    if posts and row.connected == len(devices):
        for qos in (0, 1):
            if not gatehouse:
                await asyncio.gather(*(subscribe(d, qos) for d in devices))
            latencies: list[float] = []
            stop_at = time.monotonic() + args.post_seconds
            await asyncio.gather(*(d.round_trips(qos, stop_at, latencies) for d in devices))
            ordered = sorted(latencies)
            setattr(row, f"qos{qos}_msg_s", round(len(ordered) / args.post_seconds))
            if ordered:
                setattr(row, f"qos{qos}_p50_ms", round(statistics.median(ordered), 2))
                setattr(row, f"qos{qos}_p99_ms", round(percentile(ordered, 0.99), 2))
        faults = sum(d.faults for d in devices)
        if faults:
            row.notes.append(f"{faults} posts unanswered or answered with a fault")
    await asyncio.gather(*(close(d) for d in devices))
    return row


async def subscribe(device: Device, qos: int) -> None:
    done = asyncio.get_running_loop().create_future()

    def subscribed(*_: Any) -> None:
        if not done.done():
            done.set_result(None)

    device.mqtt.on_subscribe = subscribed
    device.mqtt.subscribe(gmqtt.Subscription(device.topic, qos))
    await asyncio.wait_for(done, 30)


async def close(device: Device) -> None:
    with suppress(Exception):
        await asyncio.wait_for(device.mqtt.disconnect(), 5)


def summarise(rows: list[Row]) -> dict[str, float | None]:
    def find(broker: str, devices: int) -> Row | None:
        return next((r for r in rows if r.broker == broker and r.devices == devices), None)

    out: dict[str, float | None] = {}
    for devices in sorted({r.devices for r in rows}):
        gh, stock = find("gatehouse", devices), find("amqtt", devices)
        if gh is None or stock is None:
            continue
        for name in ("connects_s", "rss_per_conn_kb", "connect_p99_ms", "qos0_msg_s", "qos1_msg_s"):
            value = ratio(getattr(gh, name), getattr(stock, name))
            if value is not None:
                out[f"{name}_gatehouse_vs_stock_at_{devices}"] = value
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", default="1000,5000,10000", help="comma-separated counts")
    parser.add_argument("--brokers", default="amqtt,gatehouse")
    parser.add_argument("--post-seconds", type=float, default=5.0)
    parser.add_argument("--connect-deadline", type=float, default=90.0)
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/devices.json"))
    args = parser.parse_args()
    logging.getLogger("gmqtt").setLevel(logging.CRITICAL)
    spare_the_collector()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # both brokers inherit it

    counts = [int(c) for c in args.devices.split(",")]
    rows: list[Row] = []
    for count in counts:
        for broker in args.brokers.split(","):
            with (
                tempfile.TemporaryDirectory() as tmp,
                running(broker, Path(tmp), count) as (port, pid, creds),
            ):
                row = uvloop.run(measure(broker, port, pid, creds, count == counts[0], args))
            rows.append(row)
            print_table([row], COLUMNS)
    report("devices", rows, COLUMNS, summarise(rows), args.json)
    return 0


if __name__ == "__main__":
    with suppress(KeyboardInterrupt):
        raise SystemExit(main())
