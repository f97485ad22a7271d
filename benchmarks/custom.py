"""Raw uplinks of Custom products through a JavaScript script and through a Python codec,
beside JSON posts, on one gatehouse in one run.

Three products on the examples/th_frame model: a Json product whose devices send EnOS
measurepoint posts, a Custom product with examples/th_frame/platform.js uploaded, and a
Custom product naming the same frame as a Python codec (examples/th_frame/codec.py,
loaded with --codec). Each phase connects its devices and has every one of them send
posts, one at a time, each waiting for its reply, at QoS 1, for a few seconds: a JSON
post and its JSON reply, or an 8-byte report frame on `model/up_raw` decoded into a
checked property post and the reply frame encoded back on `up_raw_reply`. The phases
run one after another. Reported: round trips a second, p50 and p99 latency, faults
(a reply other than 200, or none within 10 s).

Run from the repository's root (the codec is imported as examples.th_frame.codec):

    .venv/bin/python benchmarks/custom.py [--devices 50] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import struct
import sys
import tempfile
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gmqtt
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import create_devices, percentile, ratio, report, spare_the_collector
from broker.protocol import encode_request, enos_credentials
from simulators.launch import Api, Gatehouse
from simulators.platform import with_mandatory

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "th_frame"
CODEC = "th=examples.th_frame.codec:ThFrameCodec"
MQTT_311 = 4
KINDS = ("json", "script", "codec")


@dataclass
class Row:
    kind: str
    devices: int
    round_trips_per_s: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    faults: int = 0


COLUMNS = [
    ("kind", "uplink"),
    ("devices", "devices"),
    ("round_trips_per_s", "round trips/s"),
    ("p50_ms", "p50 ms"),
    ("p99_ms", "p99 ms"),
    ("faults", "faults"),
]


class Device:
    """A gmqtt device with one post in flight at a time."""

    def __init__(self, kind: str, product_key: str, device_key: str, secret: str) -> None:
        creds = enos_credentials(product_key, device_key, secret, str(int(time.time() * 1000)))
        self.mqtt = gmqtt.Client(creds.client_id)
        self.mqtt.set_auth_credentials(creds.username, creds.password)
        self.mqtt.on_message = self._on_message
        rest = "thing/measurepoint/post" if kind == "json" else "thing/model/up_raw"
        self.topic = f"/sys/{product_key}/{device_key}/{rest}"
        self.kind = kind
        self.waiter: asyncio.Future[bytes] | None = None
        self.faults = 0

    def _on_message(self, client: Any, topic: str, payload: bytes, qos: int, props: Any) -> int:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(payload)
        return 0

    def _post(self, n: int) -> bytes:
        if self.kind == "json":
            points = {"temperature": 21.5, "humidity": 40}
            params = {"measurepoints": points, "time": int(time.time() * 1000)}
            return encode_request(str(n), "thing.measurepoint.post", params)
        return struct.pack(">BihB", 0, n, 215, 40)  # the example's report frame

    def _ok(self, answer: bytes) -> bool:
        if self.kind == "json":
            return b'"code":200' in answer
        return len(answer) == 7 and struct.unpack_from(">H", answer, 5)[0] == 200

    async def round_trips(self, stop_at: float, latencies: list[float]) -> None:
        loop = asyncio.get_running_loop()
        n = 0
        while time.monotonic() < stop_at:
            n += 1
            self.waiter = loop.create_future()
            started = time.perf_counter()
            self.mqtt.publish(self.topic, self._post(n), qos=1)
            try:
                answer = await asyncio.wait_for(self.waiter, 10)
            except TimeoutError:
                self.faults += 1
                return
            latencies.append((time.perf_counter() - started) * 1000)
            if not self._ok(answer):
                self.faults += 1


def provision(api: Api, count: int) -> dict[str, list[tuple[str, str, str]]]:
    api(
        "thing-models",
        "create",
        {"modelId": "th", "tsl": json.loads(EXAMPLE.joinpath("model.json").read_text())},
    ).ok()
    settings = {
        "json": {},
        "script": {"dataFormat": "Custom"},
        "codec": {"dataFormat": "Custom", "codec": "th"},
    }
    fleets: dict[str, list[tuple[str, str, str]]] = {}
    for kind in KINDS:
        body = {"productName": f"bench-{kind}", "modelId": "th", **settings[kind]}
        product_key: str = api("products", "create", with_mandatory(body)).ok()
        if kind == "script":
            upload = {"scriptContent": EXAMPLE.joinpath("platform.js").read_text()}
            api("product-scripts", "upload", upload, productKey=product_key).ok()
        fleets[kind] = [
            (product_key, f"{kind}{i:05d}", f"secret{kind}{i:05d}") for i in range(count)
        ]
        create_devices(api, fleets[kind])
    return fleets


async def measure(kind: str, port: int, creds: list[tuple[str, str, str]], seconds: float) -> Row:
    devices = [Device(kind, *c) for c in creds]
    for device in devices:
        await device.mqtt.connect("127.0.0.1", port, keepalive=300, version=MQTT_311)
    latencies: list[float] = []
    started = time.monotonic()
    await asyncio.gather(*(d.round_trips(started + seconds, latencies) for d in devices))
    elapsed = time.monotonic() - started
    for device in devices:
        with suppress(Exception):
            await asyncio.wait_for(device.mqtt.disconnect(), 5)
    ordered = sorted(latencies)
    return Row(
        kind,
        len(devices),
        round(len(latencies) / elapsed, 1),
        round(statistics.median(ordered), 2) if ordered else 0.0,
        round(percentile(ordered, 0.99), 2) if ordered else 0.0,
        sum(d.faults for d in devices),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=50, help="devices in each phase")
    parser.add_argument("--seconds", type=float, default=5.0, help="posting time of a phase")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/custom.json"))
    args = parser.parse_args()
    logging.getLogger("gmqtt").setLevel(logging.CRITICAL)
    spare_the_collector()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        extra = ("--log-level", "warning", "--codec", CODEC)
        server = Gatehouse(Path(tmp) / "data", extra_args=extra).start()
        try:
            fleets = provision(server.client(), args.devices)
            for kind in KINDS:
                rows.append(uvloop.run(measure(kind, server.mqtt_port, fleets[kind], args.seconds)))
        finally:
            server.stop()
    by_kind = {row.kind: row.round_trips_per_s for row in rows}
    ratios = {
        "script_vs_json": ratio(by_kind.get("script"), by_kind.get("json")),
        "codec_vs_json": ratio(by_kind.get("codec"), by_kind.get("json")),
    }
    report("custom", rows, COLUMNS, ratios, args.json)
    return 0 if all(row.faults == 0 for row in rows) else 1


if __name__ == "__main__":
    with suppress(KeyboardInterrupt):
        raise SystemExit(main())
