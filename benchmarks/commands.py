"""Synchronous service invocations through gatehouse's API, against the same request and
reply as plain pub/sub on stock amqtt 0.12.1, in one run.

100 devices are connected and answer every service call at once. Gatehouse: 50
callers each POST `commands?action=invokeService` (pendingTtl 0, so the call waits for
the device's reply) one after another for a few seconds; each call is checked against
the thing model, written to the registry, sent, answered, checked against the output
data and written again, on each store (SQLite, and PostgreSQL on a throwaway local
server). Stock amqtt: 50 callers publish the same request to the device's service
topic and wait for its reply on the `_reply` topic they subscribed to, with nothing
checked and nothing stored.

    .venv/bin/python benchmarks/commands.py [--devices 100] [--callers 50] [--seconds 5]
        [--stores sqlite,postgresql]
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
from simulators.launch import Api, Gatehouse, Postgres, StockAmqtt
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
    store: str = ""  # gatehouse's registry store
    invokes_s: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    notes: list[str] = field(default_factory=list)


COLUMNS = [
    ("broker", "broker"),
    ("store", "store"),
    ("devices", "devices"),
    ("callers", "callers"),
    ("invokes_s", "invokes/s"),
    ("p50_ms", "p50 ms"),
    ("p99_ms", "p99 ms"),
]


class KeptAlive:
    """One kept-alive HTTP/1.1 connection: a request, then its answer, read by its
    Content-Length (gatehouse's API answers every call with one)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> KeptAlive:
        return cls(*await asyncio.open_connection(host, port))

    async def post(self, target: str, headers: bytes, body: bytes) -> tuple[int, bytes]:
        self.writer.write(
            b"POST %s HTTP/1.1\r\n%sContent-Length: %d\r\n\r\n%s"
            % (target.encode(), headers, len(body), body)
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        length = next(
            int(line.partition(b":")[2])
            for line in lines
            if line.lower().startswith(b"content-length:")
        )
        return int(lines[0].split(b" ", 2)[1]), await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


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
    broker: str, workdir: Path, count: int, postgres: Postgres | None = None
) -> Iterator[tuple[int, Api | None, list[Credentials]]]:
    """Start a broker (gatehouse on a new database of `postgres` if given, else on
    SQLite); yields (MQTT port, an API client for gatehouse, the devices)."""
    if broker == "amqtt":
        stock = StockAmqtt(workdir)
        stock.start()
        try:
            yield stock.port, None, [("pk", f"dev{i:04d}", f"secret{i:04d}") for i in range(count)]
        finally:
            stock.stop()
        return
    args: tuple[str, ...] = ("--log-level", "warning")
    if postgres is not None:
        args += ("--database", postgres.new_database())
    server = Gatehouse(workdir / "data", extra_args=args).start()
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

        async def call(caller: int, creds: Credentials) -> bool:
            request_id = str(next(ids))
            waiter = asyncio.get_running_loop().create_future()
            waiting[request_id] = waiter
            payload = encode_request(request_id, "thing.service.ping", {"n": 1})
            app.publish(f"/sys/{creds[0]}/{creds[1]}/thing/service/ping", payload, qos=1)
            await asyncio.wait_for(waiter, 30)
            return True

    else:
        assert api is not None
        # Each caller on a kept-alive connection of its own, through the small client
        # below: httpx's own work per request (its pool, its streams) cost this process
        # more CPU than gatehouse spent answering, on cores the brokers share with it,
        # where the stock callers' gmqtt costs little.
        url = api.http.base_url
        auth = api.http.auth
        assert auth is not None
        authorization = next(auth.auth_flow(api.http.build_request("POST", "/")))
        headers = (
            f"Host: {url.host}:{url.port}\r\nAuthorization: "
            f"{authorization.headers['Authorization']}\r\nContent-Type: application/json\r\n"
        ).encode()
        body = orjson.dumps({"inputData": {"n": 1}})
        assert url.host is not None and url.port is not None
        connections = [await KeptAlive.open(url.host, url.port) for _ in range(args.callers)]

        async def call(caller: int, creds: Credentials) -> bool:
            target = (
                "/connect-service/v2.1/commands?action=invokeService"
                f"&productKey={creds[0]}&deviceKey={creds[1]}&serviceId=ping"
            )
            status, answer = await connections[caller].post(target, headers, body)
            reply = orjson.loads(answer)
            return (
                status == 200 and reply.get("code") == 0 and reply["data"]["state"] == "succeeded"
            )

    async def caller(offset: int) -> None:
        nonlocal failures
        for n in itertools.count(offset, args.callers):
            if time.monotonic() > stop_at:
                return
            started = time.perf_counter()
            ok = await call(offset, devices[n % len(devices)])
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
    if broker != "amqtt":
        for connection in connections:
            connection.close()
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--callers", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--brokers", default="amqtt,gatehouse")
    parser.add_argument("--stores", default="sqlite,postgresql", help="gatehouse's stores")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/commands.json"))
    args = parser.parse_args()
    logging.getLogger("gmqtt").setLevel(logging.CRITICAL)
    spare_the_collector()
    stores = args.stores.split(",")
    runs = [
        (broker, store)
        for broker in args.brokers.split(",")
        for store in (stores if broker == "gatehouse" else [""])
    ]
    postgres = Postgres().start() if ("gatehouse", "postgresql") in runs else None
    rows: list[Row] = []
    try:
        for broker, store in runs:
            with (
                tempfile.TemporaryDirectory() as tmp,
                running(
                    broker, Path(tmp), args.devices, postgres if store == "postgresql" else None
                ) as (port, api, devices),
            ):
                row = uvloop.run(measure(broker, port, api, devices, args))
                row.store = store
                rows.append(row)
    finally:
        if postgres is not None:
            postgres.remove()
    stock = next((r for r in rows if r.broker == "amqtt"), None)
    ratios = {
        f"invokes_s_{r.store}_vs_stock": ratio_of(r, stock, lambda r: r.invokes_s)
        for r in rows
        if r.broker == "gatehouse"
    }
    report("commands", rows, COLUMNS, ratios, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
