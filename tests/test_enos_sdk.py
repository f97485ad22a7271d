"""The public EnOS device SDK (enos-mqtt-sdk-python 0.1.1), unchanged, against a real
`gatehouse serve`: it connects, posts and gets the cloud's answers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from enos.core.message.IConnectCallback import IConnectCallback
from enos.core.MqttClient import MqttClient
from enos.message.upstream.tsl.EventPostRequest import EventPostRequest
from enos.message.upstream.tsl.MeasurepointPostRequest import MeasurepointPostRequest
from enos.message.upstream.tsl.ModelUpRawRequest import ModelUpRawRequest

from tests.devices import eventually, new_device
from tests.server import Api, Gatehouse

# What these tests check is stored: they run on each store (--store both).
pytestmark = pytest.mark.both_stores


@pytest.fixture
def sdk(gatehouse: Gatehouse) -> Iterator[Callable[[dict[str, str]], Any]]:
    clients: list[Any] = []

    def make(device: dict[str, str], secret: str | None = None) -> Any:
        client = MqttClient(
            f"tcp://127.0.0.1:{gatehouse.mqtt_port}",
            device["productKey"],
            device["deviceKey"],
            secret or device["deviceSecret"],
        )
        client.get_profile().set_auto_reconnect(False)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def test_the_sdk_connects_and_posts_measurepoints(
    api: Api, make_product: Callable[..., str], sdk: Callable[..., Any]
) -> None:
    device = new_device(api, make_product())
    client = sdk(device)
    client.connect()
    assert client.is_connected()
    request = MeasurepointPostRequest.builder().add_measurepoint("temp", 21.5).build()
    response = client.publish(request)
    assert response.get_code() == 200
    bad = MeasurepointPostRequest.builder().add_measurepoint("temp", 1000).build()
    refused = client.publish(bad)
    assert refused.get_code() == 460 and "above max" in refused.get_message()


def test_the_sdk_posts_events(
    api: Api, make_product: Callable[..., str], sdk: Callable[..., Any]
) -> None:
    client = sdk(new_device(api, make_product()))
    client.connect()
    event = (
        EventPostRequest.builder().set_event_identifier("overheat").add_value("temp", 98.5).build()
    )
    # The SDK sends the method as `thing.event.%s.post<id>`: gatehouse trusts the topic.
    assert client.publish(event).get_code() == 200


def test_the_sdk_sends_raw_bytes(
    api: Api, make_product: Callable[..., str], sdk: Callable[..., Any]
) -> None:
    client = sdk(new_device(api, make_product(dataFormat="Custom")))
    client.connect()
    response = client.publish(ModelUpRawRequest.builder().set_payload(b"\x01\x02\x03").build())
    assert b'"code":200' in response.get_payload()


def test_the_sdk_with_a_wrong_secret_is_refused(
    api: Api, make_product: Callable[..., str], sdk: Callable[..., Any]
) -> None:
    device = new_device(api, make_product())
    client = sdk(device, secret="wrong-secret-123")
    client.connect(IConnectCallback())  # with a callback, the SDK connects asynchronously
    query = {"productKey": device["productKey"], "deviceKey": device["deviceKey"]}
    refused = eventually(lambda: api("devices", "listMessages", kind="refused", **query).ok())
    assert refused[0]["code"] == 742  # recorded before the CONNACK went out
    assert not client.is_connected()
