"""One gateway and its 2,000 sub-devices on gatehouse, against the same packets as
plain pub/sub on stock amqtt 0.12.1, in one run.

On gatehouse the sub-devices are registered and put in the gateway's topology through
the REST API beforehand (not timed). Then:
- logins: the gateway logs all of them in with `combine/login/batch`, 100 signed
  sub-devices a request, one request at a time, each waiting for its reply;
- posts: it sends measurepoint posts on the sub-devices' own topics, round-robin,
  with 500 in flight, for a few seconds at QoS 1; each is answered on `_reply` after
  validation against the sub-device's thing model, with the sinks on.
On stock amqtt the gateway sends the same packets with nothing checked: the login
batches to its own topic and the posts to the sub-devices' topics, and it is
subscribed to both, so the broker routes each one back as the answer.

    .venv/bin/python benchmarks/gateway.py [--sub-devices 2000] [--post-seconds 5]
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
    BENCH_TSL,
    Credentials,
    create_devices,
    percentile,
    ratio_of,
    report,
    spare_the_collector,
)
from broker.protocol import encode_request, enos_connect_params, enos_credentials, enos_sign
from simulators.launch import Gatehouse, StockAmqtt
from simulators.platform import with_mandatory

MQTT_311 = 4
BATCH = 100
WINDOW = 500
log = logging.getLogger("bench")


@dataclass
class Row:
    broker: str
    sub_devices: int
    logins_s: float | None = None
    login_batch_p99_ms: float | None = None
    posts_msg_s: float | None = None
    posts_p50_ms: float | None = None
    posts_p99_ms: float | None = None
    notes: list[str] = field(default_factory=list)


COLUMNS = [
    ("broker", "broker"),
    ("sub_devices", "sub-devices"),
    ("logins_s", "logins/s"),
    ("login_batch_p99_ms", "batch p99 ms"),
    ("posts_msg_s", "posts/s"),
    ("posts_p50_ms", "post p50 ms"),
    ("posts_p99_ms", "post p99 ms"),
]


class Gateway:
    """A gmqtt client that matches answers to requests by id."""

    def __init__(self, creds: Credentials) -> None:
        pk, dk, secret = creds
        signed = enos_credentials(pk, dk, secret, str(int(time.time() * 1000)))
        self.mqtt = gmqtt.Client(signed.client_id)
        self.mqtt.set_auth_credentials(signed.username, signed.password)
        self.mqtt.on_message = self._on_message
        self.mqtt.on_subscribe = self._on_subscribe
        self.waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.subscribed: asyncio.Future[None] | None = None
        self.ids = itertools.count(1)

    def _on_message(self, client: Any, topic: str, payload: bytes, qos: int, props: Any) -> int:
        body = orjson.loads(payload)
        waiter = self.waiting.pop(str(body.get("id")), None)
        if waiter is not None and not waiter.done():
            waiter.set_result(body)
        return 0

    def _on_subscribe(self, *args: Any) -> None:
        if self.subscribed is not None and not self.subscribed.done():
            self.subscribed.set_result(None)

    async def subscribe(self, *filters: str) -> None:
        self.subscribed = asyncio.get_running_loop().create_future()
        self.mqtt.subscribe([gmqtt.Subscription(f, 1) for f in filters])
        await asyncio.wait_for(self.subscribed, 30)

    def send(self, topic: str, method: str, params: Any) -> asyncio.Future[dict[str, Any]]:
        request_id = str(next(self.ids))
        waiter = asyncio.get_running_loop().create_future()
        self.waiting[request_id] = waiter
        self.mqtt.publish(topic, encode_request(request_id, method, params), qos=1)
        return waiter


def provision(server: Gatehouse, count: int) -> tuple[Credentials, list[Credentials]]:
    api = server.client()
    api("thing-models", "create", {"modelId": "bench", "tsl": BENCH_TSL}).ok()
    gw_pk = api(
        "products",
        "create",
        with_mandatory({"productName": "gw", "modelId": "bench", "deviceType": "gateway"}),
    ).ok()
    sub_pk = api(
        "products",
        "create",
        with_mandatory({"productName": "sub", "modelId": "bench", "deviceType": "subdevice"}),
    ).ok()
    gateway = (gw_pk, "gateway1", "gatewaysecret1")
    subs = [(sub_pk, f"sub{i:05d}", f"subsecret{i:05d}") for i in range(count)]
    create_devices(api, [gateway, *subs])
    query = {"productKey": gw_pk, "deviceKey": gateway[1]}
    for start in range(0, count, 1000):
        part = [{"productKey": pk, "deviceKey": dk} for pk, dk, _ in subs[start : start + 1000]]
        api("device-topos", "addSubDevice", {"subDevices": part}, **query).ok()
    return gateway, subs


@contextmanager
def running(
    broker: str, workdir: Path, count: int
) -> Iterator[tuple[int, Credentials, list[Credentials]]]:
    if broker == "amqtt":
        stock = StockAmqtt(workdir)
        stock.start()
        subs = [("subpk", f"sub{i:05d}", f"subsecret{i:05d}") for i in range(count)]
        try:
            yield stock.port, ("gwpk", "gateway1", "gatewaysecret1"), subs
        finally:
            stock.stop()
    else:
        server = Gatehouse(
            workdir / "data",
            extra_args=("--log-level", "warning", "--max-subdevices-per-gateway", str(count)),
        ).start()
        try:
            yield server.mqtt_port, *provision(server, count)
        finally:
            server.stop()


def sub_sign(creds: Credentials, client_id: str, timestamp: str) -> str:
    pk, dk, secret = creds
    return enos_sign(secret, enos_connect_params(client_id, pk, dk, timestamp), "sha256")


async def measure(
    broker: str, port: int, gateway_creds: Credentials, subs: list[Credentials], seconds: float
) -> Row:
    row = Row(broker, len(subs))
    gateway = Gateway(gateway_creds)
    await gateway.mqtt.connect("127.0.0.1", port, keepalive=300, version=MQTT_311)
    gpk, gdk, _ = gateway_creds
    login_topic = f"/ext/session/{gpk}/{gdk}/combine/login/batch"
    if broker == "amqtt":  # the broker answers by routing each packet back
        await gateway.subscribe(login_topic, f"/sys/{subs[0][0]}/+/thing/measurepoint/post")

    # Logins, BATCH signed sub-devices a request.
    batch_ms: list[float] = []
    started = time.monotonic()
    for start in range(0, len(subs), BATCH):
        timestamp = str(int(time.time() * 1000))
        entries = [
            {
                "productKey": pk,
                "deviceKey": dk,
                "sign": sub_sign((pk, dk, s), "login.batch", timestamp),
            }
            for pk, dk, s in subs[start : start + BATCH]
        ]
        params = {
            "clientId": "login.batch",
            "timestamp": timestamp,
            "signMethod": "sha256",
            "subDevices": entries,
        }
        sent = time.perf_counter()
        answer = await asyncio.wait_for(
            gateway.send(login_topic, "combine.login.batch", params), 30
        )
        batch_ms.append((time.perf_counter() - sent) * 1000)
        if broker != "amqtt" and answer.get("code") != 200:
            row.notes.append(f"login batch answered {answer.get('code')}: {answer.get('message')}")
            break
    row.logins_s = round(len(subs) / (time.monotonic() - started))
    row.login_batch_p99_ms = round(percentile(sorted(batch_ms), 0.99), 1)

    # Posts for every sub-device, WINDOW in flight.
    topics = [f"/sys/{pk}/{dk}/thing/measurepoint/post" for pk, dk, _ in subs]
    latencies: list[float] = []
    faults = 0
    stop_at = time.monotonic() + seconds

    async def lane(offset: int) -> None:
        nonlocal faults
        for n in itertools.count(offset, WINDOW):
            if time.monotonic() > stop_at:
                return
            sent = time.perf_counter()
            params = {"measurepoints": {"temp": 21.5}, "time": int(time.time() * 1000)}
            answer = await asyncio.wait_for(
                gateway.send(topics[n % len(topics)], "thing.measurepoint.post", params), 30
            )
            latencies.append((time.perf_counter() - sent) * 1000)
            if broker != "amqtt" and answer.get("code") != 200:
                faults += 1

    await asyncio.gather(*(lane(i) for i in range(WINDOW)))
    ordered = sorted(latencies)
    row.posts_msg_s = round(len(ordered) / seconds)
    row.posts_p50_ms = round(statistics.median(ordered), 2)
    row.posts_p99_ms = round(percentile(ordered, 0.99), 2)
    if faults:
        row.notes.append(f"{faults} posts answered with a fault")
    with suppress(Exception):
        await asyncio.wait_for(gateway.mqtt.disconnect(), 5)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sub-devices", type=int, default=2000)
    parser.add_argument("--brokers", default="amqtt,gatehouse")
    parser.add_argument("--post-seconds", type=float, default=5.0)
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/gateway.json"))
    args = parser.parse_args()
    logging.getLogger("gmqtt").setLevel(logging.CRITICAL)
    spare_the_collector()
    rows: list[Row] = []
    for broker in args.brokers.split(","):
        with (
            tempfile.TemporaryDirectory() as tmp,
            running(broker, Path(tmp), args.sub_devices) as (
                port,
                gateway,
                subs,
            ),
        ):
            rows.append(uvloop.run(measure(broker, port, gateway, subs, args.post_seconds)))
    gh = next((r for r in rows if r.broker == "gatehouse"), None)
    stock = next((r for r in rows if r.broker == "amqtt"), None)
    ratios = {
        "logins_s_gatehouse_vs_stock": ratio_of(gh, stock, lambda r: r.logins_s),
        "posts_msg_s_gatehouse_vs_stock": ratio_of(gh, stock, lambda r: r.posts_msg_s),
    }
    report("gateway", rows, COLUMNS, ratios, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
