"""Lifecycle topics for MQTT applications: a device's online and offline, once stored,
on `/as/mqtt/status/{pk}/{dk}` (Alibaba's device status message), for applications of
its organisation only."""

from __future__ import annotations

import queue
from collections.abc import Callable
from typing import Any

import orjson

from broker.gate import access
from broker.gate.identity import AnonymousIdentity, AppIdentity, DeviceIdentity
from tests.conftest import unique
from tests.devices import connect, new_device
from tests.mqtt_client import Client, Message
from tests.server import Api, Gatehouse

REFUSED = 0x80


def status_of(app: Client, product_key: str, device_key: str) -> dict[str, Any]:
    message: Message = app.next_received(f"/as/mqtt/status/{product_key}/{device_key}")
    assert message.qos == 1
    status: dict[str, Any] = orjson.loads(message.payload)
    return status


def app_client(gatehouse: Gatehouse, key: str, secret: str) -> Client:
    client = Client(gatehouse.mqtt_port, unique("app"), key, secret)
    assert client.accepted
    return client


def test_an_application_sees_its_devices_come_online_and_go_offline(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str]
) -> None:
    product = make_product()
    device = new_device(api, product)
    pk, dk = device["productKey"], device["deviceKey"]
    with app_client(gatehouse, gatehouse.access_key, gatehouse.access_secret) as app:
        assert app.subscribe(f"/as/mqtt/status/{pk}/+", 1) == 1
        with connect(gatehouse.mqtt_port, device) as client:
            assert client.accepted
            online = status_of(app, pk, dk)
        offline = status_of(app, pk, dk)
    assert online["status"] == "online"
    assert online["productKey"] == pk
    assert online["deviceName"] == online["deviceKey"] == dk
    assert online["iotId"] == api("devices", "get", productKey=pk, deviceKey=dk).ok()["assetId"]
    assert online["utcTime"].endswith("Z") and online["time"][:10] == online["utcTime"][:10]
    assert "first activation" in online["reason"]
    assert offline["status"] == "offline"
    assert offline["reason"] == "disconnected"
    assert offline["timestamp"] >= online["timestamp"]


def test_a_disabled_device_goes_offline_with_its_reason(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str]
) -> None:
    device = new_device(api, make_product())
    pk, dk = device["productKey"], device["deviceKey"]
    with app_client(gatehouse, gatehouse.access_key, gatehouse.access_secret) as app:
        assert app.subscribe("/as/mqtt/status/#", 1) == 1
        with connect(gatehouse.mqtt_port, device) as client:
            assert status_of(app, pk, dk)["status"] == "online"
            api("devices", "disable", productKey=pk, deviceKey=dk).ok()
            offline = status_of(app, pk, dk)
            assert client.disconnected.wait(5)
    assert (offline["status"], offline["reason"]) == ("offline", "disabled")


def test_another_organisations_application_sees_nothing(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str]
) -> None:
    victim = new_device(api, make_product())
    tenant = api("organizations", "create", {"name": unique("tenant")}).ok()
    pk = victim["productKey"]
    with (
        app_client(gatehouse, gatehouse.access_key, gatehouse.access_secret) as owner,
        app_client(gatehouse, tenant["accessKey"], tenant["accessSecret"]) as spy,
    ):
        assert spy.subscribe(f"/as/mqtt/status/{pk}/#") == REFUSED
        assert spy.subscribe(f"/as/mqtt/status/{pk}/{victim['deviceKey']}") == REFUSED
        # A wide filter is granted; each delivery is checked against the organisation.
        assert spy.subscribe_many([("/as/mqtt/status/#", 1), ("#", 1)]) == [1, 1]
        assert owner.subscribe(f"/as/mqtt/status/{pk}/+", 1) == 1
        with connect(gatehouse.mqtt_port, victim) as client:
            assert client.accepted
            assert status_of(owner, pk, victim["deviceKey"])["status"] == "online"
        assert status_of(owner, pk, victim["deviceKey"])["status"] == "offline"
        # A SUBACK round trip: whatever was sent to the spy before it has arrived.
        assert spy.subscribe("$barrier/none") == REFUSED
        leaked = []
        while True:
            try:
                leaked.append(spy.received.get_nowait().topic)
            except queue.Empty:
                break
        assert not [t for t in leaked if pk in t]


def test_only_the_platform_publishes_on_lifecycle_topics() -> None:
    topic = "/as/mqtt/status/pk1/dev1"
    device = DeviceIdentity("pk1", "dev1", "org1")
    app = AppIdentity("org1", "dash")
    anonymous = AnonymousIdentity("anon")
    assert not access.may_publish(device, topic)
    assert not access.may_publish(app, topic)
    assert not access.may_publish(anonymous, topic)
    owner = {"pk1": "org1"}.get
    # Anonymous clients (with --allow-anonymous) neither subscribe to it nor receive it.
    assert not access.may_subscribe(anonymous, "/as/#", owner)
    assert not access.may_receive(anonymous, topic, owner)
    assert not access.may_subscribe(device, "/as/mqtt/status/pk1/dev1", owner)
    assert access.may_receive(app, topic, owner)
    assert not access.may_receive(AppIdentity("org2", "spy"), topic, owner)
    assert not access.may_subscribe(AppIdentity("org2", "spy"), "/as/mqtt/status/pk1/+", owner)
