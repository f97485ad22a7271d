"""Dynamic activation (EnOS securemode 3) on a real `gatehouse serve`, with the
unchanged EnOS SDK and with paho for every refusal."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from enos.core.internal.Profile import Profile
from enos.core.login.DynamicActivationLogin import DynamicActivationLogin
from enos.core.message.IConnectCallback import IConnectCallback
from enos.core.MqttClient import MqttClient

from broker.protocol import enos_credentials
from tests.devices import connect, eventually, lift_connect_limit, new_device
from tests.mqtt_client import Client
from tests.server import Api, Gatehouse

Device = dict[str, str]


def product_secret(api: Api, product_key: str) -> str:
    return str(api("products", "get", productKey=product_key).ok()["productSecret"])


def activate(gatehouse: Gatehouse, device: Device, secret: str) -> Client:
    """CONNECT as the SDK does for dynamic activation: securemode=3, the ProductSecret."""
    creds = enos_credentials(
        device["productKey"],
        device["deviceKey"],
        secret,
        str(int(time.time() * 1000)),
        secure_mode=3,
    )
    return Client(gatehouse.mqtt_port, creds.client_id, creds.username, creds.password)


def refusal(api: Api, device: Device) -> dict[str, Any]:
    query = {"productKey": device["productKey"], "deviceKey": device["deviceKey"]}
    entries = eventually(lambda: api("devices", "listMessages", kind="refused", **query).ok())
    return entries[0]  # type: ignore[no-any-return]


def test_the_sdk_activates_and_receives_its_secret(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str]
) -> None:
    product = make_product(dynamicActivateEnabled=True)
    device = new_device(api, product)
    login = DynamicActivationLogin(
        f"tcp://127.0.0.1:{gatehouse.mqtt_port}",
        product,
        product_secret(api, product),
        device["deviceKey"],
    )
    client = MqttClient(profile=Profile.create_instance(login))
    client.get_profile().set_auto_reconnect(False)
    received: list[str] = []
    arrived = threading.Event()

    def on_activated(secret: str) -> None:
        received.append(secret)
        arrived.set()

    client.on_device_dynamic_active = on_activated
    try:
        # With a callback the SDK connects asynchronously; its synchronous connect() can
        # miss a fast CONNACK (it waits on a condition notified before it waits) and hang 10 s.
        client.connect(IConnectCallback())
        assert arrived.wait(5)
        assert client.is_connected()
    finally:
        client.close()
    assert received == [device["deviceSecret"]]
    query = {"productKey": product, "deviceKey": device["deviceKey"]}
    eventually(lambda: api("devices", "get", **query).ok()["activatedAt"] is not None)
    lift_connect_limit(api, device)  # instead of waiting out one CONNECT a second
    with connect(gatehouse.mqtt_port, device) as again:  # from now on with its own secret
        assert again.accepted


def test_activation_refusals(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str]
) -> None:
    closed = make_product()
    device = new_device(api, closed)
    with activate(gatehouse, device, product_secret(api, closed)) as client:
        assert client.connack == 5
    assert refusal(api, device)["code"] == 770

    product = make_product(dynamicActivateEnabled=True)
    wrong = new_device(api, product)
    with activate(gatehouse, wrong, "not-the-product-secret") as client:
        assert client.connack == 5
    assert refusal(api, wrong)["code"] == 742

    active = new_device(api, product)
    with connect(gatehouse.mqtt_port, active) as client:  # activated by a normal login
        assert client.accepted
    lift_connect_limit(api, active)
    with activate(gatehouse, active, product_secret(api, product)) as client:
        assert client.connack == 5
    entry = refusal(api, active)
    assert entry["code"] == 770 and "active already" in entry["detail"]


def test_activation_consumes_the_quota(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str]
) -> None:
    product = make_product(dynamicActivateEnabled=True, activationQuota=1)
    first, second = new_device(api, product), new_device(api, product)
    secret = product_secret(api, product)
    with activate(gatehouse, first, secret) as client:
        assert client.accepted
    with activate(gatehouse, second, secret) as client:
        assert client.connack == 5
    assert "quota" in refusal(api, second)["detail"]
