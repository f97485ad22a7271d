"""The broker core against stock amqtt 0.12.1, in the same run, on loopback.

For each core and client count: N clients connect (64 in flight) and each subscribes
to its own reply and downlink topics, as devices do; the broker's RSS is read before
and after. One application client subscribes to `bench/+/up`. Then:
- fan-in: 100 of the clients publish QoS 0 to it as fast as the broker routes
  (a closed loop of 500 messages in flight, so nothing is lost to overrun);
- latency: they publish 1,000 messages per second, open loop, for a few seconds;
- resubscribe: every client SUBSCRIBEs to its two topics again (64 in flight).
Every phase has a deadline; a phase that misses it is reported as not finished.

Stock amqtt runs as `amqtt -c` with its default plugins; gatehouse as
`gatehouse serve --allow-anonymous`. Numbers vary with the machine; the ratios in the
same run are what to read.

    .venv/bin/python benchmarks/broker_core.py [--clients 1000,10000] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import resource
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import gmqtt
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (
    bounded,
    percentile,
    print_table,
    ratio_of,
    report,
    rss_kb,
    spare_the_collector,
)
from simulators.launch import Gatehouse, StockAmqtt

PUBLISHERS = 100
WINDOW = 500
DRAIN_S = 5.0  # how long to wait for stragglers after a phase
MQTT_311 = 4
log = logging.getLogger("bench")


@dataclass
class Row:
    core: str
    clients: int
    connect_s: float | None = None
    connected: int = 0
    rss_per_client_kb: float | None = None
    fan_in_msg_s: float | None = None
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    latency_lost: int | None = None
    resubscribe_s: float | None = None
    notes: list[str] = field(default_factory=list)


class BenchClient:
    """A gmqtt client with awaitable SUBACKs."""

    def __init__(self, client_id: str, on_message: Callable[..., Any] | None = None) -> None:
        self.mqtt = gmqtt.Client(client_id)
        self._subacks: dict[int, asyncio.Future[None]] = {}
        self.mqtt.on_subscribe = self._on_subscribe
        if on_message is not None:
            self.mqtt.on_message = on_message

    def _on_subscribe(self, client: Any, mid: int, qos: Any, properties: Any) -> None:
        waiter = self._subacks.pop(mid, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def connect(self, port: int) -> None:
        await self.mqtt.connect("127.0.0.1", port, keepalive=300, version=MQTT_311)

    async def subscribe(self, *topics: str, qos: int = 1) -> None:
        mid = self.mqtt.subscribe([gmqtt.Subscription(t, qos) for t in topics])
        waiter = asyncio.get_running_loop().create_future()
        self._subacks[mid] = waiter
        await waiter

    def publish(self, topic: str, payload: bytes) -> None:
        self.mqtt.publish(topic, payload, qos=0)

    async def close(self) -> None:
        await self.mqtt.disconnect()


async def measure(core: str, port: int, pid: int, clients: int, args: argparse.Namespace) -> Row:
    row = Row(core, clients)
    devices = [BenchClient(f"bench-{i}") for i in range(clients)]
    received: list[int] = []  # arrival times (ns) of fan-in messages at the application
    latencies: list[float] = []
    latency_mode = False
    expected = 0  # `all_in` is set once this many messages have arrived
    all_in = asyncio.Event()

    def on_app_message(client: Any, topic: str, payload: bytes, qos: int, props: Any) -> int:
        now = time.perf_counter_ns()
        if latency_mode:
            latencies.append((now - struct.unpack("!q", payload[:8])[0]) / 1e6)
        received.append(now)
        if len(received) >= expected:
            all_in.set()
        return 0

    async def until_all_in(count: int) -> None:
        nonlocal expected
        expected = count
        all_in.clear()
        if len(received) < count:
            with suppress(TimeoutError):
                await asyncio.wait_for(all_in.wait(), DRAIN_S)

    app = BenchClient("bench-app", on_app_message)
    await app.connect(port)
    await app.subscribe("bench/+/up", qos=0)
    rss_before = rss_kb(pid)

    async def join(i: int) -> None:
        await devices[i].connect(port)
        await devices[i].subscribe(f"bench/{i}/reply", f"bench/{i}/down")

    started = time.monotonic()
    row.connected = await bounded(
        [partial(join, i) for i in range(clients)], started + args.connect_deadline
    )
    if row.connected < clients:
        row.notes.append(f"connect: {row.connected} of {clients} in {args.connect_deadline} s")
        await close_all(devices, app)
        return row
    row.connect_s = round(time.monotonic() - started, 2)
    await asyncio.sleep(1)
    row.rss_per_client_kb = round((rss_kb(pid) - rss_before) / clients, 1)

    # Fan-in: a closed loop keeps WINDOW messages in flight between publishers and app.
    publishers = devices[: min(PUBLISHERS, clients)]
    topics = [f"bench/{i}/up" for i in range(len(publishers))]
    sent, payload = 0, b"x" * 64
    received.clear()
    started = time.monotonic()
    stop_at = started + args.duration
    while time.monotonic() < stop_at and sent < args.max_messages:
        while sent - len(received) < WINDOW and sent < args.max_messages:
            publishers[sent % len(publishers)].publish(topics[sent % len(publishers)], payload)
            sent += 1
        await asyncio.sleep(0)
    await until_all_in(sent)
    elapsed = (received[-1] - received[0]) / 1e9 if len(received) > 1 else 0
    row.fan_in_msg_s = round(len(received) / elapsed) if elapsed else None
    if len(received) < sent:
        row.notes.append(f"fan-in: {sent - len(received)} of {sent} not received")

    # Latency at a fixed 1,000 msg/s (open loop: sent on schedule whatever the broker does).
    received.clear()
    expected = 1 << 62
    latency_mode = True
    total = 1000 * args.latency_seconds
    started_ns = time.perf_counter_ns()
    for n in range(total):
        due = started_ns + n * 1_000_000
        delay = (due - time.perf_counter_ns()) / 1e9
        if delay > 0:
            await asyncio.sleep(delay)
        publishers[n % len(publishers)].publish(
            topics[n % len(publishers)], struct.pack("!q", time.perf_counter_ns()) + payload
        )
    await until_all_in(total)
    latency_mode = False
    if latencies:
        ordered = sorted(latencies)
        row.latency_p50_ms = round(statistics.median(ordered), 2)
        row.latency_p99_ms = round(percentile(ordered, 0.99), 2)
    row.latency_lost = total - len(latencies)

    # Resubscribe: every device SUBSCRIBEs to its two topics again.
    started = time.monotonic()
    done = await bounded(
        [
            partial(devices[i].subscribe, f"bench/{i}/reply", f"bench/{i}/down")
            for i in range(clients)
        ],
        started + args.resubscribe_deadline,
    )
    if done == clients:
        row.resubscribe_s = round(time.monotonic() - started, 2)
    else:
        row.notes.append(f"resubscribe: {done} of {clients} in {args.resubscribe_deadline} s")
    await close_all(devices, app)
    return row


async def close_all(devices: list[BenchClient], app: BenchClient) -> None:
    async def close(client: BenchClient) -> None:
        try:
            await asyncio.wait_for(client.close(), 5)
        except Exception:  # a broker that fell over still has to be left
            return

    await asyncio.gather(*(close(c) for c in [*devices, app]))


@contextmanager
def running(core: str, workdir: Path) -> Iterator[tuple[int, int]]:
    """Start a broker; yields (mqtt port, pid)."""
    if core == "amqtt":
        stock = StockAmqtt(workdir)  # default config: amqtt's own plugins, anonymous allowed
        stock.start()
        assert stock.process is not None
        try:
            yield stock.port, stock.process.pid
        finally:
            stock.stop()
    else:
        loop = "asyncio" if core == "gatehouse-asyncio" else "auto"
        server = Gatehouse(
            workdir / "data",
            extra_args=("--allow-anonymous", "--log-level", "warning", "--event-loop", loop),
        ).start()
        assert server.process is not None
        try:
            yield server.mqtt_port, server.process.pid
        finally:
            server.stop()


COLUMNS = [
    ("core", "core"),
    ("clients", "clients"),
    ("connect_s", "connect s"),
    ("rss_per_client_kb", "KB/client"),
    ("fan_in_msg_s", "fan-in msg/s"),
    ("latency_p50_ms", "p50 ms"),
    ("latency_p99_ms", "p99 ms"),
    ("resubscribe_s", "resub s"),
]


def ratios(rows: list[Row]) -> dict[str, float | None]:
    def find(core: str, clients: int) -> Row | None:
        return next((r for r in rows if r.core == core and r.clients == clients), None)

    counts = sorted({r.clients for r in rows})
    small, large = counts[0], counts[-1]
    stock_small, gh_small, gh_large = (
        find("amqtt", small),
        find("gatehouse", small),
        find("gatehouse", large),
    )

    return {
        f"gatehouse_fan_in_{large}_vs_{small}": ratio_of(
            gh_large, gh_small, lambda r: r.fan_in_msg_s
        ),
        f"gatehouse_{large}_vs_stock_{small}_fan_in": ratio_of(
            gh_large, stock_small, lambda r: r.fan_in_msg_s
        ),
        f"gatehouse_vs_stock_fan_in_at_{small}": ratio_of(
            gh_small, stock_small, lambda r: r.fan_in_msg_s
        ),
        f"rss_per_client_gatehouse_vs_stock_at_{small}": ratio_of(
            gh_small, stock_small, lambda r: r.rss_per_client_kb
        ),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="1000,10000", help="comma-separated client counts")
    parser.add_argument("--cores", default="amqtt,gatehouse,gatehouse-asyncio")
    parser.add_argument("--duration", type=float, default=5.0, help="fan-in seconds")
    parser.add_argument("--max-messages", type=int, default=200_000)
    parser.add_argument("--latency-seconds", type=int, default=3)
    parser.add_argument("--connect-deadline", type=float, default=60.0)
    parser.add_argument("--resubscribe-deadline", type=float, default=60.0)
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/broker_core.json"))
    args = parser.parse_args()
    logging.getLogger("gmqtt").setLevel(logging.CRITICAL)
    spare_the_collector()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # both brokers inherit it

    rows: list[Row] = []
    counts = [int(c) for c in args.clients.split(",")]
    for clients in counts:
        for core in args.cores.split(","):
            with tempfile.TemporaryDirectory() as tmp, running(core, Path(tmp)) as (port, pid):
                row = uvloop.run(measure(core, port, pid, clients, args))
            rows.append(row)
            print_table([row], COLUMNS)
    report("broker_core", rows, COLUMNS, ratios(rows), args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
