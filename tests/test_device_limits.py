"""The configurable limits on devices, on a gatehouse started with tight ones:
payload size, packet size, the per-device connect limit, and the refused-PUBLISH policy."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from broker.protocol import encode_request
from simulators.platform import with_mandatory
from tests.conftest import THERMOSTAT_TSL, unique
from tests.devices import connect, eventually, new_device, topic
from tests.server import Api, Gatehouse

MAX_PAYLOAD = 4096


@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gatehouse]:
    server = Gatehouse(
        tmp_path_factory.mktemp("tight") / "data",
        extra_args=(
            "--max-payload",
            str(MAX_PAYLOAD),
            "--connect-limit",
            "2/60:300",
            "--on-refused-publish",
            "disconnect",
        ),
    ).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tight_product(tight: Gatehouse) -> str:
    api = tight.client()
    model = unique("model")
    api("thing-models", "create", {"modelId": model, "tsl": THERMOSTAT_TSL}).ok()
    key: str = api(
        "products", "create", with_mandatory({"productName": unique("p"), "modelId": model})
    ).ok()
    return key


@pytest.fixture
def device(tight: Gatehouse, tight_product: str) -> dict[str, str]:
    return new_device(tight.client(), tight_product)


def test_a_payload_over_the_limit_gets_a_coded_reply(
    tight: Gatehouse, device: dict[str, str]
) -> None:
    with connect(tight.mqtt_port, device) as client:
        full = topic(device, "thing/measurepoint/post")
        padding = "x" * MAX_PAYLOAD
        client.publish(full, encode_request("big1", "m", {"pad": padding}), qos=1)
        reply = orjson.loads(client.next_received(full + "_reply").payload)
        assert reply["id"] == "big1" and reply["code"] == 1220
        assert f"the limit is {MAX_PAYLOAD}" in reply["message"]
        assert not client.disconnected.is_set()


def test_a_packet_far_over_the_limit_ends_the_connection_unread(
    tight: Gatehouse, device: dict[str, str]
) -> None:
    with connect(tight.mqtt_port, device) as client:
        client.paho.publish(topic(device, "thing/measurepoint/post"), b"x" * 100_000, qos=0)
        assert client.disconnected.wait(5)


def test_a_refused_publish_ends_the_connection_when_configured(
    tight: Gatehouse, device: dict[str, str]
) -> None:
    other = new_device(tight.client(), device["productKey"])
    with connect(tight.mqtt_port, device) as client:
        assert client.accepted
        client.paho.publish(topic(other, "thing/service/reboot"), b"{}", qos=0)
        assert client.disconnected.wait(5)


def refusals(api: Api, device: dict[str, str]) -> list[dict[str, Any]]:
    query = {"productKey": device["productKey"], "deviceKey": device["deviceKey"]}
    entries: list[dict[str, Any]] = api("devices", "listMessages", kind="refused", **query).ok()
    return entries


def test_the_connect_limit_refuses_a_burst_and_then_blocks(
    tight: Gatehouse, device: dict[str, str]
) -> None:
    first = connect(tight.mqtt_port, device)
    first.close()
    assert first.accepted
    too_soon = connect(tight.mqtt_port, device)  # under a second after the first
    too_soon.close()
    assert too_soon.connack == 5
    entry = eventually(lambda: refusals(tight.client(), device))[0]
    assert entry["code"] == 429 and "try again" in entry["detail"]
    # The refused attempt counted: a third within the window blocks the device, even
    # with the right secret and a second's wait (the waits are the behaviour under test).
    time.sleep(1.1)
    blocked = connect(tight.mqtt_port, device)
    blocked.close()
    assert blocked.connack == 5
    time.sleep(1.1)
    still = connect(tight.mqtt_port, device)
    still.close()
    assert still.connack == 5
