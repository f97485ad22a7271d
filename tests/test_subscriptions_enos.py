"""EnOS data subscription with the public `enos-subscribe` 2.6.0 client, unchanged (run in
a subprocess by tests/subscription_consumer.py), fed by the public EnOS device SDK
against a real `gatehouse serve`."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from enos.core.MqttClient import MqttClient
from enos.message.upstream.tsl.MeasurepointPostRequest import MeasurepointPostRequest

from simulators.platform import with_mandatory
from tests.conftest import THERMOSTAT_TSL, unique
from tests.devices import eventually, new_device
from tests.server import Api, Gatehouse

ROOT = Path(__file__).resolve().parent.parent
LINE_TIMEOUT = 20.0


class Consumer:
    """tests/subscription_consumer.py in a subprocess, its stdout read line by line."""

    def __init__(self, gatehouse: Gatehouse, sub: dict[str, Any], group: str, **over: str):
        args = {
            "host": "127.0.0.1",
            "port": str(gatehouse.subscribe_port),
            "key": sub["accessKey"],
            "secret": sub["accessSecret"],
            "sub_id": sub["subId"],
            **over,
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.subscription_consumer", *args.values(), group],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(json.loads(line))

    def next(self, timeout: float = LINE_TIMEOUT) -> dict[str, Any]:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"the consumer printed nothing within {timeout} s") from None

    def values(self, count: int) -> list[dict[str, Any]]:
        return [json.loads(self.next()["value"]) for _ in range(count)]

    def kill(self) -> None:
        # SIGKILL: the client gets no chance to commit anything more on its way out.
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)


@pytest.fixture
def consumers() -> Iterator[Callable[..., Consumer]]:
    started: list[Consumer] = []

    def start(gatehouse: Gatehouse, sub: dict[str, Any], group: str, **over: str) -> Consumer:
        consumer = Consumer(gatehouse, sub, group, **over)
        started.append(consumer)
        return consumer

    yield start
    for consumer in started:
        if consumer.process.poll() is None:
            consumer.kill()


def _product(api: Api) -> str:
    model = unique("model")
    api("thing-models", "create", {"modelId": model, "tsl": THERMOSTAT_TSL}).ok()
    key: str = api(
        "products", "create", with_mandatory({"productName": unique("p"), "modelId": model})
    ).data
    return key


def _device_client(gatehouse: Gatehouse, device: dict[str, str]) -> Any:
    client = MqttClient(
        f"tcp://127.0.0.1:{gatehouse.mqtt_port}",
        device["productKey"],
        device["deviceKey"],
        device["deviceSecret"],
    )
    client.get_profile().set_auto_reconnect(False)
    client.connect()
    return client


def _post(client: Any, *temps: float) -> None:
    """Each post answered 200: stored, so the subscription has it."""
    for temp in temps:
        request = MeasurepointPostRequest.builder().add_measurepoint("temp", temp).build()
        assert client.publish(request).get_code() == 200


@pytest.fixture
def sdk() -> Iterator[Callable[[Gatehouse, dict[str, str]], Any]]:
    clients: list[Any] = []

    def make(gatehouse: Gatehouse, device: dict[str, str]) -> Any:
        clients.append(_device_client(gatehouse, device))
        return clients[-1]

    yield make
    for client in clients:
        client.close()


def _committed(api: Api, sub_id: str, group: str) -> int:
    state = api("subscriptions", "get", subId=sub_id).data
    found = [g for g in state["groups"] if g["consumerGroup"] == group]
    return sum(found[0]["committedOffsets"]) if found else 0


def test_the_client_resumes_after_its_commit_across_restarts(
    new_gatehouse: Callable[..., Gatehouse],
    consumers: Callable[..., Consumer],
    sdk: Callable[..., Any],
) -> None:
    gatehouse = new_gatehouse()
    api = gatehouse.client()
    product_key = _product(api)
    device = new_device(api, product_key)
    sub = api(
        "subscriptions", "create", {"productKeys": [product_key], "kinds": ["measurepoints"]}
    ).data
    assert sub["accessSecret"] and sub["port"] == gatehouse.subscribe_port

    device_client = sdk(gatehouse, device)
    _post(device_client, 21.0, 22.0, 23.0)
    first = consumers(gatehouse, sub, "app")
    assert first.next() == {"subscribed": True}
    got = first.values(3)
    assert [(m["pointId"], m["value"]) for m in got] == [
        ("temp", 21.0),
        ("temp", 22.0),
        ("temp", 23.0),
    ]
    assert {m["deviceKey"] for m in got} == {device["deviceKey"]}
    # Having yielded the third, the client commits it before it waits for a fourth.
    eventually(lambda: _committed(api, sub["subId"], "app") == 3 or None)
    first.kill()

    _post(device_client, 24.0, 25.0)
    device_client.close()
    gatehouse.stop()
    gatehouse.start()

    second = consumers(gatehouse, sub, "app")
    assert second.next() == {"subscribed": True}
    assert [m["value"] for m in second.values(2)] == [24.0, 25.0]
    # A group of its own gets everything retained.
    other = consumers(gatehouse, sub, "audit")
    assert other.next() == {"subscribed": True}
    assert [m["value"] for m in other.values(5)] == [21.0, 22.0, 23.0, 24.0, 25.0]
    # And the first group got nothing it had committed: nothing more is waiting for it.
    _post(sdk(gatehouse, device), 26.0)
    assert [m["value"] for m in second.values(1)] == [26.0]


def test_two_consumers_of_one_group_share_the_work(
    gatehouse: Gatehouse,
    api: Api,
    consumers: Callable[..., Consumer],
    sdk: Callable[..., Any],
) -> None:
    product_key = _product(api)
    # One device on each of the subscription's two partitions (by ProductKey/DeviceKey).
    devices: dict[int, dict[str, str]] = {}
    while len(devices) < 2:
        device = new_device(api, product_key)
        devices.setdefault(zlib.crc32(f"{product_key}/{device['deviceKey']}".encode()) % 2, device)
    sub = api("subscriptions", "create", {"productKeys": [product_key]}).data
    a = consumers(gatehouse, sub, "shared")
    assert a.next() == {"subscribed": True}
    b = consumers(gatehouse, sub, "shared")
    assert b.next() == {"subscribed": True}
    eventually(lambda: _consumers(api, sub["subId"]) == 2 or None)
    for partition, device in devices.items():
        _post(sdk(gatehouse, device), 10.0 + partition, 20.0 + partition)
    got_a = {m["deviceKey"] for m in a.values(2) if m["kind"] == "measurepoints"}
    got_b = {m["deviceKey"] for m in b.values(2) if m["kind"] == "measurepoints"}
    # Each consumer owns one partition: each device's messages went to one of them.
    assert len(got_a) == len(got_b) == 1
    assert got_a | got_b == {d["deviceKey"] for d in devices.values()}


def _consumers(api: Api, sub_id: str) -> int:
    state = api("subscriptions", "get", subId=sub_id).data
    return sum(g["consumers"] for g in state["groups"])


def test_a_wrong_sign_or_an_unknown_sub_id_is_refused_in_the_protocol(
    gatehouse: Gatehouse, api: Api, consumers: Callable[..., Consumer]
) -> None:
    sub = api("subscriptions", "create", {"kinds": ["measurepoints"]}).data
    wrong = consumers(gatehouse, sub, "auth", secret="not-the-secret").next()
    assert wrong["type"] == "AuthRsp" and wrong["ack"] == 401 and "sign" in wrong["msg"]
    unknown = consumers(gatehouse, sub, "auth", sub_id="sub-no-such-thing").next()
    assert unknown["ack"] == 404 and "does not exist" in unknown["msg"]
    # The DataClient itself, given a wrong secret, is turned away and closes its socket.
    assert consumers(gatehouse, sub, "app", secret="not-the-secret").next() == {"refused": True}
    assert consumers(gatehouse, sub, "auth").next()["ack"] == 0
