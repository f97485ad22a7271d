"""Synchronous service invocations through gatehouse's API, against the same request and
reply as plain pub/sub on stock amqtt 0.12.1, in one run.

100 devices are connected and answer every service call at once. Gatehouse: 50
callers each POST `commands?action=invokeService` (pendingTtl 0, so the call waits for
the device's reply) one after another for a few seconds; each call is checked against
the thing model, written to the registry, sent, answered, checked against the output
data and written again. Stock amqtt: 50 callers publish the same request to the
device's service topic and wait for its reply on the `_reply` topic they subscribed
to, with nothing checked and nothing stored.

    .venv/bin/python benchmarks/commands.py [--devices 100] [--callers 50] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gmqtt
import httpx
import orjson
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (
    Credentials,
    create_devices,
    percentile,
    ratio_of,
    report,
    spare_the_collector,
)
from broker.protocol import encode_reply, encode_request, enos_credentials
from simulators.launch import Api, Gatehouse, StockAmqtt
from simulators.platform import with_mandatory

MQTT_311 = 4
TSL = {
    "services": [
        {
            "identifier": "ping",
            "inputData": [{"identifier": "n", "dataType": {"type": "int", "specs": {}}}],
            "outputData": [{"identifier": "n", "dataType": {"type": "int", "specs": {}}}],
        }
    ]
}


@dataclass
class Row:
    broker: str
    devices: int
    callers: int
    invokes_s: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    notes: list[str] = field(default_factory=list)


COLUMNS = [
    ("broker", "broker"),
    ("devices", "devices"),
    ("callers", "callers"),
    ("invokes_s", "invokes/s"),
    ("p50_ms", "p50 ms"),
    ("p99_ms", "p99 ms"),
]


def client(creds: Credentials, on_message: Any) -> gmqtt.Client:
    signed = enos_credentials(*creds, str(int(time.time() * 1000)))
    mqtt = gmqtt.Client(signed.client_id)
    mqtt.set_auth_credentials(signed.username, signed.password)
    mqtt.on_message = on_message
    return mqtt


def device(creds: Credentials) -> gmqtt.Client:
    """Answers every service call at once with its input as output."""

    def on_message(mqtt: Any, topic: str, payload: bytes, qos: int, props: Any) -> int:
        request = orjson.loads(payload)
        mqtt.publish(topic + "_reply", encode_reply(request["id"], 200, request["params"]), qos=1)
        return 0

    return client(creds, on_message)


@contextmanager
def running(
    broker: str, workdir: Path, count: int
) -> Iterator[tuple[int, Api | None, list[Credentials]]]:
    """Start a broker; yields (MQTT port, an API client for gatehouse, the devices)."""
    if broker == "amqtt":
        stock = StockAmqtt(workdir)
        stock.start()
        try:
            yield stock.port, None, [("pk", f"dev{i:04d}", f"secret{i:04d}") for i in range(count)]
        finally:
            stock.stop()
        return
    server = Gatehouse(workdir / "data", extra_args=("--log-level", "warning")).start()
    try:
        api = server.client()
        api("thing-models", "create", {"modelId": "bench", "tsl": TSL}).ok()
        pk = api(
            "products", "create", with_mandatory({"productName": "bench", "modelId": "bench"})
        ).ok()
        devices = [(pk, f"dev{i:04d}", f"secret{i:04d}") for i in range(count)]
        create_devices(api, devices)
        yield server.mqtt_port, api, devices
    finally:
        server.stop()


async def measure(
    broker: str, port: int, api: Api | None, devices: list[Credentials], args: argparse.Namespace
) -> Row:
    row = Row(broker, len(devices), args.callers)
    clients = [device(creds) for creds in devices]
    for mqtt in clients:
        await mqtt.connect("127.0.0.1", port, keepalive=300, version=MQTT_311)
    if broker == "amqtt":  # gatehouse subscribes devices itself; on stock amqtt they do
        for mqtt, (pk, dk, _) in zip(clients, devices, strict=True):
            mqtt.subscribe(gmqtt.Subscription(f"/sys/{pk}/{dk}/thing/service/ping", 1))
        await asyncio.sleep(1)
    latencies: list[float] = []
    failures = 0
    stop_at = time.monotonic() + args.seconds
    ids = itertools.count(1)

    if broker == "amqtt":
        waiting: dict[str, asyncio.Future[None]] = {}

        def on_reply(mqtt: Any, topic: str, payload: bytes, qos: int, props: Any) -> int:
            waiter = waiting.pop(str(orjson.loads(payload)["id"]), None)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
            return 0

        app = gmqtt.Client("bench-app")
        app.on_message = on_reply
        await app.connect("127.0.0.1", port, keepalive=300, version=MQTT_311)
        app.subscribe(gmqtt.Subscription("/sys/+/+/thing/service/ping_reply", 1))
        await asyncio.sleep(0.5)

        async def call(creds: Credentials) -> bool:
            request_id = str(next(ids))
            waiter = asyncio.get_running_loop().create_future()
            waiting[request_id] = waiter
            payload = encode_request(request_id, "thing.service.ping", {"n": 1})
            app.publish(f"/sys/{creds[0]}/{creds[1]}/thing/service/ping", payload, qos=1)
            await asyncio.wait_for(waiter, 30)
            return True

    else:
        assert api is not None
        http = httpx.AsyncClient(base_url=str(api.http.base_url), timeout=60, auth=api.http.auth)

        async def call(creds: Credentials) -> bool:
            response = await http.post(
                "/connect-service/v2.1/commands",
                params={
                    "action": "invokeService",
                    "productKey": creds[0],
                    "deviceKey": creds[1],
                    "serviceId": "ping",
                },
                json={"inputData": {"n": 1}},
            )
            body = response.json()
            return bool(body.get("code") == 0 and body["data"]["state"] == "succeeded")

    async def caller(offset: int) -> None:
        nonlocal failures
        for n in itertools.count(offset, args.callers):
            if time.monotonic() > stop_at:
                return
            started = time.perf_counter()
            ok = await call(devices[n % len(devices)])
            latencies.append((time.perf_counter() - started) * 1000)
            failures += not ok

    await asyncio.gather(*(caller(i) for i in range(args.callers)))
    ordered = sorted(latencies)
    row.invokes_s = round(len(ordered) / args.seconds)
    row.p50_ms = round(statistics.median(ordered), 2)
    row.p99_ms = round(percentile(ordered, 0.99), 2)
    if failures:
        row.notes.append(f"{failures} calls did not succeed")
    for mqtt in clients:
        with suppress(Exception):
            await asyncio.wait_for(mqtt.disconnect(), 5)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--callers", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--brokers", default="amqtt,gatehouse")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/commands.json"))
    args = parser.parse_args()
    logging.getLogger("gmqtt").setLevel(logging.CRITICAL)
    spare_the_collector()
    rows: list[Row] = []
    for broker in args.brokers.split(","):
        with (
            tempfile.TemporaryDirectory() as tmp,
            running(broker, Path(tmp), args.devices) as (
                port,
                api,
                devices,
            ),
        ):
            rows.append(uvloop.run(measure(broker, port, api, devices, args)))
    gh = next((r for r in rows if r.broker == "gatehouse"), None)
    stock = next((r for r in rows if r.broker == "amqtt"), None)
    ratios = {"invokes_s_gatehouse_vs_stock": ratio_of(gh, stock, lambda r: r.invokes_s)}
    report("commands", rows, COLUMNS, ratios, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
