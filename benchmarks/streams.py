"""Devices posting with applications attached, beside the same load with none, in one run.

One gatehouse, N devices (1,000 by default) connected, each posting EnOS measurepoints
at QoS 1 one at a time (benchmarks/devices.py's devices) for a few seconds: first with
no consumer, then with an `enos-subscribe` 2.6.0 consumer, a webhook receiver and an
SSE stream attached, each in a process of its own. Reported: the post rate of each
phase and their ratio (the claim: >= 0.8), and for each consumer what it got, its
delivery rate over the phase and its backlog at the end (a slow consumer must cost the
devices nothing: what it cannot take waits, bounded, or is dropped and counted).

    .venv/bin/python benchmarks/streams.py [--devices 1000] [--post-seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import bounded, report, spare_the_collector
from benchmarks.devices import CONNECTS_IN_FLIGHT, Device, close, provision
from simulators.launch import Api, Gatehouse, free_port

ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger("bench")


@dataclass
class Row:
    phase: str
    devices: int
    posts_s: float | None = None
    consumer: str = "-"
    received: int | None = None
    delivered_s: float | None = None
    backlog: int | None = None
    notes: list[str] = field(default_factory=list)


COLUMNS = [
    ("phase", "phase"),
    ("devices", "devices"),
    ("posts_s", "QoS1 posts/s"),
    ("consumer", "consumer"),
    ("received", "received"),
    ("delivered_s", "delivered/s"),
    ("backlog", "backlog"),
]


# -- the consumers, each run as `streams.py consume KIND ...` in a process of its own ---


def _counting(count: list[int]) -> None:
    """Print the running count twice a second: the parent reads the last line."""
    while True:
        print(count[0], flush=True)
        time.sleep(0.5)


def consume_webhook(port: str) -> None:
    count = [0]

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            count[0] += len(json.loads(body)["messages"])
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", int(port)), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _counting(count)


def consume_sse(url: str, key: str, secret: str, product_key: str) -> None:
    count = [0]
    threading.Thread(target=_counting, args=(count,), daemon=True).start()
    query = {"productKey": product_key, "kinds": "measurepoints"}
    with httpx.stream(
        "GET", url, params=query, auth=(key, secret), timeout=httpx.Timeout(10, read=60)
    ) as events:
        for line in events.iter_lines():
            if line.startswith("event:"):
                count[0] += 1


def consume_enos(port: str, key: str, secret: str, sub_id: str) -> None:
    os.environ["PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"] = "python"  # see the README
    from enos_subscribe import DataClient

    count = [0]
    threading.Thread(target=_counting, args=(count,), daemon=True).start()
    client = DataClient(host="127.0.0.1", port=port, access_key=key, access_secret=secret)
    client.subscribe(sub_id=sub_id, consumer_group="bench")
    for _value in client:
        count[0] += 1


CONSUMERS: dict[str, Callable[..., None]] = {
    "webhook": consume_webhook,
    "sse": consume_sse,
    "enos": consume_enos,
}


class Consumer:
    """A consumer process; `count` is the last count it printed."""

    def __init__(self, name: str, *args: str) -> None:
        self.name = name
        self.count = 0
        self.process = subprocess.Popen(  # noqa: S603 - this script, our arguments
            [sys.executable, str(Path(__file__).resolve()), "consume", name, *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.started = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.count = int(line)
            self.started.set()

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(10)


# -- the run -----------------------------------------------------------------------------


async def posts(devices: list[Device], seconds: float) -> tuple[float, int]:
    latencies: list[float] = []
    stop_at = time.monotonic() + seconds
    await asyncio.gather(*(d.round_trips(1, stop_at, latencies) for d in devices))
    return round(len(latencies) / seconds), sum(d.faults for d in devices)


def attach(server: Gatehouse, api: Api, product_key: str) -> list[Consumer]:
    sub = api(
        "subscriptions", "create", {"productKeys": [product_key], "kinds": ["measurepoints"]}
    ).ok()
    hook_port = free_port()
    webhook = Consumer("webhook", str(hook_port))
    hook = {"url": f"http://127.0.0.1:{hook_port}/", "productKeys": [product_key]}
    api("webhooks", "create", {**hook, "kinds": ["measurepoints"]}).ok()
    consumers = [
        webhook,
        Consumer(
            "sse",
            f"{server.url}/connect-service/v2.1/stream",
            server.access_key,
            server.access_secret,
            product_key,
        ),
        Consumer(
            "enos",
            str(server.subscribe_port),
            sub["accessKey"],
            sub["accessSecret"],
            sub["subId"],
        ),
    ]
    for consumer in consumers:
        if not consumer.started.wait(30):
            raise RuntimeError(f"the {consumer.name} consumer did not start")
    return consumers


def backlogs(api: Api) -> dict[str, int]:
    """What waits for each consumer, as the API says it."""
    subs = api("subscriptions", "list").ok()
    hooks = api("webhooks", "list").ok()
    return {
        "enos": sum(s["backlog"] for s in subs),
        "webhook": sum(h["queued"] for h in hooks),
    }


async def measure(
    server: Gatehouse, creds: list[tuple[str, str, str]], seconds: float
) -> list[Row]:
    api = server.client()
    devices = [Device(pk, dk, secret, "_reply") for pk, dk, secret in creds]

    connected = await bounded(
        [partial(d.connect, server.mqtt_port) for d in devices],
        time.monotonic() + 90,
        CONNECTS_IN_FLIGHT,
    )
    if connected < len(devices):
        raise RuntimeError(f"only {connected} of {len(devices)} devices connected")
    await posts(devices, 1.0)  # warm-up: not reported
    alone, faults = await posts(devices, seconds)
    rows = [Row("none attached", len(devices), alone)]
    if faults:
        rows[0].notes.append(f"{faults} posts unanswered or faulty")
    consumers = await asyncio.to_thread(attach, server, api, creds[0][0])
    try:
        before = {c.name: c.count for c in consumers}
        attached, faults = await posts(devices, seconds)
        got = {c.name: c.count - before[c.name] for c in consumers}
        waiting = await asyncio.to_thread(backlogs, api)
    finally:
        for consumer in consumers:
            consumer.stop()
    for n, consumer in enumerate(consumers):
        row = Row(
            "3 attached" if n == 0 else "",
            len(devices),
            attached if n == 0 else None,
            consumer.name,
            got[consumer.name],
            round(got[consumer.name] / seconds),
            waiting.get(consumer.name),
        )
        rows.append(row)
    if faults:
        rows[1].notes.append(f"{faults} posts unanswered or faulty")
    await asyncio.gather(*(close(d) for d in devices))
    return rows


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "consume":
        kind, rest = sys.argv[2], sys.argv[3:]
        with suppress(KeyboardInterrupt, BrokenPipeError):
            CONSUMERS[kind](*rest)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--post-seconds", type=float, default=5.0)
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/streams.json"))
    args = parser.parse_args()
    logging.getLogger("gmqtt").setLevel(logging.CRITICAL)
    spare_the_collector()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with tempfile.TemporaryDirectory() as tmp:
        server = Gatehouse(Path(tmp) / "data", extra_args=("--log-level", "warning")).start()
        try:
            creds = provision(server, args.devices)
            rows = uvloop.run(measure(server, creds, args.post_seconds))
        finally:
            server.stop()
    alone, attached = rows[0].posts_s, rows[1].posts_s
    ratios = {"posts_attached_vs_none": round(attached / alone, 2) if alone and attached else None}
    report("streams", rows, COLUMNS, ratios, args.json)
    return 0


if __name__ == "__main__":
    with suppress(KeyboardInterrupt):
        raise SystemExit(main())
