"""Which MQTT client the load runner should use: client CPU per QoS 0 PUBLISH and the
time for 2,000 CONNECTs, against one broker in the same run.

Each client publishes `--messages` QoS 0 messages as fast as it can; the figure is the
process CPU it spent (the broker runs in its own process). Clients: a minimal raw
asyncio client (the floor: encoding and one write per packet), gmqtt (what the
simulators use), paho-mqtt 2 (threaded), and aiomqtt (if installed: it is not a
dependency of gatehouse; `pip install aiomqtt` to include it).

    .venv/bin/python benchmarks/clients.py [--messages 50000] [--connects 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import logging
import struct
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import gmqtt
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import report, spare_the_collector
from simulators.launch import StockAmqtt

TOPIC = "bench/clients"
PAYLOAD = b"x" * 64


@dataclass
class Row:
    client: str
    us_per_message: float | None = None
    connects_s: float | None = None
    notes: list[str] = field(default_factory=list)


COLUMNS = [("client", "client"), ("us_per_message", "CPU us/msg"), ("connects_s", "connects/s")]


def _length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("!H", len(data)) + data


class RawClient:
    """CONNECT and QoS 0 PUBLISH, nothing else: the floor any client library sits on."""

    async def connect(self, port: int, client_id: str) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port)
        body = _string("MQTT") + bytes([4, 0x02]) + struct.pack("!H", 60) + _string(client_id)
        self.writer.write(b"\x10" + _length(len(body)) + body)
        await self.reader.readexactly(4)  # CONNACK

    def publish(self, topic: str, payload: bytes) -> None:
        body = _string(topic) + payload
        self.writer.write(b"\x30" + _length(len(body)) + body)

    async def close(self) -> None:
        self.writer.write(b"\xe0\x00")
        await self.writer.drain()
        self.writer.close()


async def raw_run(port: int, messages: int, connects: int) -> Row:
    client = RawClient()
    await client.connect(port, "raw-pub")
    started = time.process_time()
    for n in range(messages):
        client.publish(TOPIC, PAYLOAD)
        if n % 1000 == 0:
            await client.writer.drain()
    await client.writer.drain()
    row = Row("raw asyncio", round((time.process_time() - started) / messages * 1e6, 1))
    await client.close()
    began = time.monotonic()
    clients = [RawClient() for _ in range(connects)]
    await asyncio.gather(*(c.connect(port, f"raw-{i}") for i, c in enumerate(clients)))
    row.connects_s = round(connects / (time.monotonic() - began))
    await asyncio.gather(*(c.close() for c in clients))
    return row


async def gmqtt_run(port: int, messages: int, connects: int) -> Row:
    client = gmqtt.Client("gmqtt-pub")
    await client.connect("127.0.0.1", port, version=4)
    started = time.process_time()
    for n in range(messages):
        client.publish(TOPIC, PAYLOAD, qos=0)
        if n % 1000 == 0:
            await asyncio.sleep(0)
    row = Row("gmqtt", round((time.process_time() - started) / messages * 1e6, 1))
    await client.disconnect()
    began = time.monotonic()
    clients = [gmqtt.Client(f"gmqtt-{i}") for i in range(connects)]
    sem = asyncio.Semaphore(100)

    async def join(c: gmqtt.Client) -> None:
        async with sem:
            await c.connect("127.0.0.1", port, version=4)

    await asyncio.gather(*(join(c) for c in clients))
    row.connects_s = round(connects / (time.monotonic() - began))
    await asyncio.gather(*(c.disconnect() for c in clients))
    return row


async def aiomqtt_run(port: int, messages: int, connects: int) -> Row:
    import aiomqtt

    async with aiomqtt.Client("127.0.0.1", port, identifier="aiomqtt-pub") as client:
        started = time.process_time()
        for _ in range(messages):
            await client.publish(TOPIC, PAYLOAD, qos=0)
        row = Row("aiomqtt", round((time.process_time() - started) / messages * 1e6, 1))
    began = time.monotonic()
    sem = asyncio.Semaphore(100)
    clients = [aiomqtt.Client("127.0.0.1", port, identifier=f"aio-{i}") for i in range(connects)]

    async def join(c: aiomqtt.Client) -> None:
        async with sem:
            await c.__aenter__()

    await asyncio.gather(*(join(c) for c in clients))
    row.connects_s = round(connects / (time.monotonic() - began))
    for c in clients:
        await c.__aexit__(None, None, None)
    return row


def paho_run(port: int, messages: int) -> Row:
    done = threading.Event()
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="paho-pub", protocol=paho.MQTTv311)
    client.on_connect = lambda *a: done.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    done.wait(10)
    started = time.process_time()
    for _ in range(messages):
        client.publish(TOPIC, PAYLOAD, qos=0)
    while client.want_write():
        time.sleep(0.01)
    row = Row("paho-mqtt 2", round((time.process_time() - started) / messages * 1e6, 1))
    row.notes.append("threaded; connects not measured")
    client.disconnect()
    client.loop_stop()
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--connects", type=int, default=2000)
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/clients.json"))
    args = parser.parse_args()
    logging.getLogger("gmqtt").setLevel(logging.CRITICAL)
    spare_the_collector()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        stock = StockAmqtt(Path(tmp)).start()
        try:
            rows.append(asyncio.run(raw_run(stock.port, args.messages, args.connects)))
            rows.append(asyncio.run(gmqtt_run(stock.port, args.messages, args.connects)))
            rows.append(paho_run(stock.port, args.messages))
            if importlib.util.find_spec("aiomqtt") is not None:
                rows.append(
                    asyncio.run(aiomqtt_run(stock.port, args.messages // 10, args.connects))
                )
            else:
                rows.append(Row("aiomqtt", notes=["not installed"]))
        finally:
            stock.stop()
    report("clients", rows, COLUMNS, {}, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
