"""A gateway on the unchanged EnOS SDK: topology, sub-device sessions and posts for
sub-devices against a real `gatehouse serve`, each with its reply code."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from enos.core.MqttClient import MqttClient
from enos.message.upstream.status.SubDeviceLoginBatchRequest import SubDeviceLoginBatchRequest
from enos.message.upstream.status.SubDeviceLoginRequest import SubDeviceLoginRequest
from enos.message.upstream.status.SubDeviceLogoutRequest import SubDeviceLogoutRequest
from enos.message.upstream.topo.SubDeviceInfo import SubDeviceInfo
from enos.message.upstream.topo.TopoAddRequest import TopoAddRequest
from enos.message.upstream.topo.TopoDeleteRequest import TopoDeleteRequest
from enos.message.upstream.topo.TopoGetRequest import TopoGetRequest
from enos.message.upstream.tsl.MeasurepointPostRequest import MeasurepointPostRequest

from tests.devices import eventually, new_device
from tests.server import Api, Gatehouse

# What these tests check is stored: they run on each store (--store both).
pytestmark = pytest.mark.both_stores


@pytest.fixture
def sdk(gatehouse: Gatehouse) -> Iterator[Callable[[dict[str, str]], Any]]:
    clients: list[Any] = []

    def make(device: dict[str, str]) -> Any:
        client = MqttClient(
            f"tcp://127.0.0.1:{gatehouse.mqtt_port}",
            device["productKey"],
            device["deviceKey"],
            device["deviceSecret"],
        )
        client.get_profile().set_auto_reconnect(False)
        client.connect()
        assert client.is_connected()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def gateway(api: Api, make_product: Callable[..., str]) -> dict[str, str]:
    return new_device(api, make_product(deviceType="gateway"))


@pytest.fixture
def sub_product(make_product: Callable[..., str]) -> str:
    return make_product(deviceType="subdevice")


def info(device: dict[str, str], secret: str | None = None) -> Any:
    return SubDeviceInfo(
        device["productKey"], device["deviceKey"], secret or device["deviceSecret"]
    )


def state(api: Api, device: dict[str, str]) -> str:
    data = api("devices", "get", productKey=device["productKey"], deviceKey=device["deviceKey"])
    return str(data.ok()["state"])


def test_the_whole_gateway_flow_answers_200(
    api: Api, gateway: dict[str, str], sub_product: str, sdk: Callable[..., Any]
) -> None:
    subs = [new_device(api, sub_product) for _ in range(3)]
    client = sdk(gateway)
    add = TopoAddRequest.builder().add_sub_devices([info(s) for s in subs]).build()
    assert client.publish(add).get_code() == 200
    listed = client.publish(TopoGetRequest.builder().build())
    assert listed.get_code() == 200
    assert {d["deviceKey"] for d in listed.get_data()} == {s["deviceKey"] for s in subs}

    first = subs[0]
    login = SubDeviceLoginRequest.builder().set_sub_device_info(
        first["productKey"], first["deviceKey"], first["deviceSecret"]
    )
    response = client.publish(login.build())
    assert response.get_code() == 200
    assert response.get_data()["deviceKey"] == first["deviceKey"]
    eventually(lambda: state(api, first) == "online")

    batch = SubDeviceLoginBatchRequest.builder()
    for sub in subs[1:]:
        batch.add_sub_device_info(sub["productKey"], sub["deviceKey"], sub["deviceSecret"])
    batched = client.publish(batch.build())
    assert batched.get_code() == 200
    logged = batched.get_data()["loginedSubDevices"]
    assert {d["deviceKey"] for d in logged} == {s["deviceKey"] for s in subs[1:]}

    post = (
        MeasurepointPostRequest.builder()
        .set_product_key(first["productKey"])
        .set_device_key(first["deviceKey"])
        .add_measurepoint("temp", 19.5)
        .build()
    )
    assert client.publish(post).get_code() == 200
    query = {"productKey": first["productKey"], "deviceKey": first["deviceKey"]}
    assert eventually(lambda: api("devices", "getLatest", **query).ok())["temp"]["value"] == 19.5

    logout = SubDeviceLogoutRequest.builder().set_sub_product_key(first["productKey"])
    assert client.publish(logout.set_sub_device_key(first["deviceKey"]).build()).get_code() == 200
    eventually(lambda: state(api, first) == "offline")
    delete = TopoDeleteRequest.builder().delete_sub_device(first["productKey"], first["deviceKey"])
    assert client.publish(delete.build()).get_code() == 200
    remaining = client.publish(TopoGetRequest.builder().build()).get_data()
    assert {d["deviceKey"] for d in remaining} == {s["deviceKey"] for s in subs[1:]}


def test_sdk_refusals_carry_the_platform_codes(
    api: Api, gateway: dict[str, str], sub_product: str, sdk: Callable[..., Any]
) -> None:
    client = sdk(gateway)
    sub, stranger = new_device(api, sub_product), new_device(api, sub_product)
    wrong_sign = TopoAddRequest.builder().add_sub_device(info(sub, "not-its-secret")).build()
    assert client.publish(wrong_sign).get_code() == 742
    assert (
        client.publish(TopoAddRequest.builder().add_sub_device(info(sub)).build()).get_code() == 200
    )

    def login(device: dict[str, str], secret: str | None = None) -> Any:
        request = SubDeviceLoginRequest.builder().set_sub_device_info(
            device["productKey"], device["deviceKey"], secret or device["deviceSecret"]
        )
        return client.publish(request.build())

    assert login(stranger).get_code() == 740  # not in this gateway's topology
    assert login(sub, "not-its-secret").get_code() == 742
    api("devices", "disable", productKey=sub["productKey"], deviceKey=sub["deviceKey"]).ok()
    assert login(sub).get_code() == 723
    ghost = {"productKey": sub_product, "deviceKey": "ghost99", "deviceSecret": "whatever99"}
    assert login(ghost).get_code() == 705

    batch = SubDeviceLoginBatchRequest.builder()
    for device in (sub, stranger):
        batch.add_sub_device_info(device["productKey"], device["deviceKey"], device["deviceSecret"])
    partly = client.publish(batch.build())
    assert partly.get_code() == 723
    failed = {d["deviceKey"]: d["code"] for d in partly.get_data()["failedSubDevices"]}
    assert failed == {sub["deviceKey"]: 723, stranger["deviceKey"]: 740}
