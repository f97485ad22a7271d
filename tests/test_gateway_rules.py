"""Every gateway rule over real MQTT (paho) against a real `gatehouse serve`: specified
gateways, switching, the online limit, gateway loss, revocation while online, the
topic ACL around sub-devices, offline posts, integration mode, registration and the
REST API's device-topos."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest

from simulators.platform import with_mandatory
from tests.conftest import THERMOSTAT_TSL, unique
from tests.devices import (
    ask,
    connect,
    eventually,
    ext_topic,
    lift_connect_limit,
    new_device,
    request,
    signed_sub,
    topic,
)
from tests.mqtt_client import Client
from tests.server import Api, Gatehouse

Device = dict[str, str]


def state(api: Api, device: Device) -> str:
    data = api("devices", "get", productKey=device["productKey"], deviceKey=device["deviceKey"])
    return str(data.ok()["state"])


def topo_add(client: Client, gateway: Device, *subs: Device) -> dict[str, Any]:
    return request(client, gateway, "thing/topo/add", [signed_sub(s) for s in subs])


def login(client: Client, gateway: Device, sub: Device) -> dict[str, Any]:
    return ask(client, ext_topic(gateway, "combine/login"), signed_sub(sub))


def post(client: Client, device: Device, value: float = 20.0) -> dict[str, Any]:
    return request(client, device, "thing/measurepoint/post", {"measurepoints": {"temp": value}})


@pytest.fixture
def gateway_product(make_product: Callable[..., str]) -> str:
    return make_product(deviceType="gateway")


@pytest.fixture
def sub_product(make_product: Callable[..., str]) -> str:
    return make_product(deviceType="subdevice")


@pytest.fixture
def gateway(api: Api, gateway_product: str) -> Device:
    return new_device(api, gateway_product)


@pytest.fixture
def sub(api: Api, sub_product: str) -> Device:
    return new_device(api, sub_product)


@pytest.fixture
def online_gateway(gatehouse: Gatehouse, gateway: Device) -> Iterator[Client]:
    with connect(gatehouse.mqtt_port, gateway) as client:
        assert client.accepted
        yield client


@pytest.fixture
def logged_in(online_gateway: Client, gateway: Device, sub: Device) -> Client:
    assert topo_add(online_gateway, gateway, sub)["code"] == 200
    assert login(online_gateway, gateway, sub)["code"] == 200
    return online_gateway


# -- topology rules ------------------------------------------------------------------------


def test_a_specified_gateway_admits_only_the_named_gateways(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str], gateway_product: str
) -> None:
    named = new_device(api, gateway_product)
    other = new_device(api, make_product(deviceType="gateway"))
    specified = {"enabled": True, "gatewayProductKeys": [gateway_product]}
    sub_product = make_product(deviceType="subdevice", specifiedGateway=specified)
    sub = new_device(api, sub_product)
    with connect(gatehouse.mqtt_port, other) as client:
        refused = topo_add(client, other, sub)
        assert refused["code"] == 1255 and "specifies its gateways" in refused["message"]
    with connect(gatehouse.mqtt_port, named) as client:
        assert topo_add(client, named, sub)["code"] == 200
        # The product's rule is checked again at login: narrowed after the add, it refuses.
        narrowed = {
            "enabled": True,
            "gatewayDevices": [
                {"productKey": other["productKey"], "deviceKey": other["deviceKey"]}
            ],
        }
        api("products", "update", {"specifiedGateway": narrowed}, productKey=sub_product).ok()
        refused = login(client, named, sub)
        assert refused["code"] == 740 and "specifies its gateways" in refused["message"]


def test_a_switching_sub_device_moves_and_its_old_gateway_is_told(
    gatehouse: Gatehouse,
    api: Api,
    gateway: Device,
    gateway_product: str,
    sub: Device,
    logged_in: Client,
) -> None:
    second = new_device(api, gateway_product)
    with connect(gatehouse.mqtt_port, second) as client:
        assert topo_add(client, second, sub)["code"] == 200
        notice = logged_in.next_received(ext_topic(gateway, "combine/delete"))
        body = orjson.loads(notice.payload)
        assert body["method"] == "combine.delete"
        assert body["params"] == {"productKey": sub["productKey"], "deviceKey": sub["deviceKey"]}
        # Logged out of the old gateway, which may no longer speak for it.
        assert login(logged_in, gateway, sub)["code"] == 740
        assert login(client, second, sub)["code"] == 200
        assert post(client, sub)["code"] == 200


def test_without_switching_a_sub_device_stays_where_it_is(
    gatehouse: Gatehouse,
    api: Api,
    make_product: Callable[..., str],
    gateway: Device,
    gateway_product: str,
    online_gateway: Client,
) -> None:
    sub = new_device(api, make_product(deviceType="subdevice", dynamicGatewaySwitching=False))
    assert topo_add(online_gateway, gateway, sub)["code"] == 200
    second = new_device(api, gateway_product)
    with connect(gatehouse.mqtt_port, second) as client:
        refused = topo_add(client, second, sub)
        assert refused["code"] == 1255 and "dynamic gateway switching" in refused["message"]
        # The second gateway cannot steal it by logging it in either.
        assert login(client, second, sub)["code"] == 740


def test_an_online_sub_device_cannot_be_deleted_from_the_topology(
    api: Api, gateway: Device, sub: Device, logged_in: Client
) -> None:
    entry = [{"productKey": sub["productKey"], "deviceKey": sub["deviceKey"]}]
    refused = request(logged_in, gateway, "thing/topo/delete", entry)
    assert refused["code"] == 1256
    assert ask(logged_in, ext_topic(gateway, "combine/logout"), entry[0])["code"] == 200
    assert request(logged_in, gateway, "thing/topo/delete", entry)["code"] == 200
    assert request(logged_in, gateway, "thing/topo/get", {})["data"] == []


def test_only_a_gateway_has_sub_devices(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str], sub: Device
) -> None:
    direct = new_device(api, make_product())
    with connect(gatehouse.mqtt_port, direct) as client:
        refused = topo_add(client, direct, sub)
        assert refused["code"] == 1255 and "not a gateway" in refused["message"]
        assert login(client, direct, sub)["code"] == 740


def test_a_gateway_cannot_be_a_sub_device(
    api: Api, gateway: Device, gateway_product: str, online_gateway: Client
) -> None:
    other = new_device(api, gateway_product)
    refused = topo_add(online_gateway, gateway, other)
    assert refused["code"] == 1255 and "cannot be a sub-device" in refused["message"]


# -- sub-device sessions ---------------------------------------------------------------------


def test_a_gateway_posts_for_a_logged_in_sub_device_only(
    gatehouse: Gatehouse, api: Api, gateway: Device, sub_product: str, online_gateway: Client
) -> None:
    sub = new_device(api, sub_product)
    assert topo_add(online_gateway, gateway, sub)["code"] == 200
    before = api("broker", "stats").ok()["mqtt"]["refused_publish"]
    # Not logged in: the PUBLISH is refused by the ACL, so no reply comes.
    online_gateway.publish(topic(sub, "thing/measurepoint/post"), b'{"id":"1","params":{}}', 1)
    assert post(online_gateway, gateway)["code"] == 200  # the gateway's own: a barrier
    assert online_gateway.received.empty()
    assert api("broker", "stats").ok()["mqtt"]["refused_publish"] >= before + 1
    assert login(online_gateway, gateway, sub)["code"] == 200
    assert post(online_gateway, sub, 12.5)["code"] == 200
    bad = post(online_gateway, sub, 900.0)
    assert bad["code"] == 460  # checked against the sub-device's own thing model
    query = {"productKey": sub["productKey"], "deviceKey": sub["deviceKey"]}
    ups = eventually(lambda: api("devices", "listMessages", kind="up", **query).ok())
    assert ups[0]["topic"] == topic(sub, "thing/measurepoint/post")  # counted as the sub's


def test_no_other_client_touches_a_logged_in_sub_devices_topics(
    gatehouse: Gatehouse, api: Api, gateway_product: str, sub: Device, logged_in: Client
) -> None:
    second = new_device(api, gateway_product)
    with connect(gatehouse.mqtt_port, second) as client:
        assert client.subscribe(topic(sub, "thing/service/#"), 1) == 0x80
        client.publish(topic(sub, "thing/measurepoint/post"), b"{}", qos=1)
        assert login(client, second, sub)["code"] == 740
    with pytest.raises(queue.Empty):
        logged_in.received.get(timeout=0.3)


def test_losing_the_gateway_takes_its_sub_devices_offline(
    api: Api, gatehouse: Gatehouse, gateway: Device, sub: Device, sub_product: str
) -> None:
    other = new_device(api, sub_product)
    client = connect(gatehouse.mqtt_port, gateway)
    assert topo_add(client, gateway, sub, other)["code"] == 200
    assert login(client, gateway, sub)["code"] == 200
    assert login(client, gateway, other)["code"] == 200
    eventually(lambda: state(api, sub) == state(api, other) == "online")
    client.drop()  # the gateway loses power
    eventually(lambda: state(api, sub) == state(api, other) == "offline", timeout=10)
    query = {"productKey": sub["productKey"], "deviceKey": sub["deviceKey"]}
    offline = api("devices", "listMessages", kind="offline", **query).ok()[0]
    # The gateway's socket closed without DISCONNECT: so its sub-devices' events say.
    expected = f"gateway {gateway['productKey']}/{gateway['deviceKey']} connection lost"
    assert offline["detail"] == expected


@pytest.mark.parametrize("action", ["disable", "delete"])
def test_revoking_an_online_sub_device_logs_it_out_and_tells_the_gateway(
    api: Api, gateway: Device, sub: Device, logged_in: Client, action: str
) -> None:
    api("devices", action, productKey=sub["productKey"], deviceKey=sub["deviceKey"]).ok()
    notice = orjson.loads(logged_in.next_received(ext_topic(gateway, f"combine/{action}")).payload)
    assert notice["params"]["deviceKey"] == sub["deviceKey"]
    # Its topics are no longer the gateway's.
    logged_in.publish(topic(sub, "thing/measurepoint/post"), b'{"id":"x","params":{}}', 1)
    assert post(logged_in, gateway)["code"] == 200  # the gateway's own: a barrier
    assert logged_in.received.empty()


def test_batch_posts_honour_allow_offline_sub_device(
    api: Api, gateway: Device, sub: Device, online_gateway: Client
) -> None:
    assert topo_add(online_gateway, gateway, sub)["code"] == 200
    entries = [
        {
            "productKey": sub["productKey"],
            "deviceKey": sub["deviceKey"],
            "measurepoints": {"temp": 7.0},
        }
    ]
    refused = request(online_gateway, gateway, "thing/measurepoint/post/batch", entries)
    assert refused["code"] == 723 and "allowOfflineSubDevice" in refused["message"]
    allowed = request(
        online_gateway,
        gateway,
        "thing/measurepoint/post/batch",
        entries,
        extra={"allowOfflineSubDevice": True},
    )
    assert allowed["code"] == 200
    query = {"productKey": sub["productKey"], "deviceKey": sub["deviceKey"]}
    assert eventually(lambda: api("devices", "getLatest", **query).ok())["temp"]["value"] == 7.0


def test_a_direct_device_logged_in_through_a_gateway_loses_its_own_connection(
    gatehouse: Gatehouse,
    api: Api,
    make_product: Callable[..., str],
    gateway: Device,
    online_gateway: Client,
) -> None:
    device = new_device(api, make_product())  # a direct product's device may sit under a gateway
    with connect(gatehouse.mqtt_port, device) as direct:
        assert direct.accepted
        assert topo_add(online_gateway, gateway, device)["code"] == 200
        assert login(online_gateway, gateway, device)["code"] == 200
        assert direct.disconnected.wait(5)
        assert post(online_gateway, device)["code"] == 200


# -- integration mode and registration -------------------------------------------------------


def test_an_integration_gateway_vouches_for_its_sub_devices(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str]
) -> None:
    # The access mode is the sub-device product's (issue 16).
    gateway = new_device(api, make_product(deviceType="gateway"))
    sub = new_device(api, make_product(deviceType="subdevice", gatewayAccessMode="integration"))
    with connect(gatehouse.mqtt_port, gateway) as client:
        assert topo_add(client, gateway, sub)["code"] == 200
        # No combine/login: the sub-device is online with its gateway.
        assert post(client, sub, 30.0)["code"] == 200
        eventually(lambda: state(api, sub) == "online")
        # Leaving the topology is allowed while online, and takes it offline.
        entry = [{"productKey": sub["productKey"], "deviceKey": sub["deviceKey"]}]
        assert request(client, gateway, "thing/topo/delete", entry)["code"] == 200
        eventually(lambda: state(api, sub) == "offline")
    # Sub-devices in its topology come online when it connects, and go with it.
    query = {"productKey": gateway["productKey"], "deviceKey": gateway["deviceKey"]}
    body = {"subDevices": [{"productKey": sub["productKey"], "deviceKey": sub["deviceKey"]}]}
    api("device-topos", "addSubDevice", body, **query).ok()
    lift_connect_limit(api, gateway)  # instead of waiting out one CONNECT a second
    with connect(gatehouse.mqtt_port, gateway) as client:
        eventually(lambda: state(api, sub) == "online")
        assert post(client, sub, 31.0)["code"] == 200
    eventually(lambda: state(api, sub) == "offline")


def test_a_gateway_registers_sub_devices_of_dynamic_products(
    api: Api, make_product: Callable[..., str], gateway: Device, online_gateway: Client
) -> None:
    dynamic = make_product(deviceType="subdevice", dynamicActivateEnabled=True)
    fixed = make_product(deviceType="subdevice")
    key = unique("reg")
    registered = request(
        online_gateway,
        gateway,
        "thing/device/register",
        [{"productKey": dynamic, "deviceKey": key, "deviceName": {"defaultValue": "x"}}],
    )
    assert registered["code"] == 200
    (created,) = registered["data"]
    assert created["deviceKey"] == key and created["deviceSecret"] and created["assetId"]
    assert topo_add(online_gateway, gateway, created)["code"] == 200
    assert login(online_gateway, gateway, created)["code"] == 200
    refused = request(online_gateway, gateway, "thing/device/register", [{"productKey": fixed}])
    assert refused["code"] == 770


# -- the REST API ---------------------------------------------------------------------------


def test_device_topos_over_the_api(
    api: Api,
    gateway: Device,
    gateway_product: str,
    sub: Device,
    sub_product: str,
    logged_in: Client,
) -> None:
    query = {"productKey": gateway["productKey"], "deviceKey": gateway["deviceKey"]}
    listed = api("device-topos", "list", **query).ok()
    assert [d["deviceKey"] for d in listed] == [sub["deviceKey"]]
    other = new_device(api, sub_product)
    body = {"subDevices": [{"productKey": other["productKey"], "deviceKey": other["deviceKey"]}]}
    assert (
        api("device-topos", "addSubDevice", body, **query).ok()[0]["deviceKey"]
        == other["deviceKey"]
    )
    online = {"subDevices": [{"productKey": sub["productKey"], "deviceKey": sub["deviceKey"]}]}
    busy = api("device-topos", "deleteSubDevice", online, **query)
    assert busy.status == 409 and "online" in busy.msg
    api("device-topos", "deleteSubDevice", body, **query).ok()
    assert len(api("device-topos", "list", **query).ok()) == 1
    not_a_gateway = {"productKey": sub["productKey"], "deviceKey": sub["deviceKey"]}
    refused = api("device-topos", "addSubDevice", body, **not_a_gateway)
    assert refused.status == 400 and "not a gateway" in refused.msg
    missing = api("device-topos", "addSubDevice", {"subDevices": []}, **query)
    assert missing.status == 400 and "subDevices" in missing.msg


# -- the online limit, on a gatehouse of its own --------------------------------------------


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gatehouse]:
    server = Gatehouse(
        tmp_path_factory.mktemp("small") / "data",
        extra_args=("--max-subdevices-per-gateway", "2"),
    ).start()
    yield server
    server.stop()


def test_a_gateway_has_at_most_the_limit_of_sub_devices_online(small: Gatehouse) -> None:
    api = small.client()
    model = unique("model")
    api("thing-models", "create", {"modelId": model, "tsl": THERMOSTAT_TSL}).ok()
    gw_product = api(
        "products",
        "create",
        with_mandatory({"productName": unique("g"), "modelId": model, "deviceType": "gateway"}),
    ).ok()
    sub_product = api(
        "products",
        "create",
        with_mandatory({"productName": unique("s"), "modelId": model, "deviceType": "subdevice"}),
    ).ok()
    gateway = new_device(api, gw_product)
    subs = [new_device(api, sub_product) for _ in range(3)]
    with connect(small.mqtt_port, gateway) as client:
        assert topo_add(client, gateway, *subs)["code"] == 200
        assert login(client, gateway, subs[0])["code"] == 200
        assert login(client, gateway, subs[1])["code"] == 200
        refused = login(client, gateway, subs[2])
        assert refused["code"] == 429 and "limit" in refused["message"]
        assert login(client, gateway, subs[0])["code"] == 200  # already in: not counted twice
        logout = {"productKey": subs[0]["productKey"], "deviceKey": subs[0]["deviceKey"]}
        assert ask(client, ext_topic(gateway, "combine/logout"), logout)["code"] == 200
        assert login(client, gateway, subs[2])["code"] == 200


@pytest.mark.parametrize(("entries", "says"), [(1001, "at most 1000"), (0, "must be a list")])
def test_an_enos_batch_login_over_the_limit_or_empty_is_refused(
    online_gateway: Client, gateway: Device, sub: Device, entries: int, says: str
) -> None:
    """EnOS's combine/login/batch takes at most 1,000 sub-devices (the dialect's limit);
    one more, or none, is a 1220 naming it."""
    params = {
        "clientId": "login.batch",
        "timestamp": str(int(time.time() * 1000)),
        "signMethod": "sha256",
        "subDevices": [{"productKey": sub["productKey"], "deviceKey": sub["deviceKey"]}] * entries,
    }
    reply = ask(online_gateway, ext_topic(gateway, "combine/login/batch"), params)
    assert reply["code"] == 1220 and says in reply["message"], reply
