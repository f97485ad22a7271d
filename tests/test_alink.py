"""The Alink dialect over real MQTT (paho) against a real `gatehouse serve`: a device
that signs as linkkit does is admitted on the same registry and answered in Alink."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson

from broker.protocol import alink_credentials, alink_sign, encode_request
from tests.devices import eventually, new_device
from tests.mqtt_client import Client
from tests.server import Api, Gatehouse

Device = dict[str, str]


def alink(
    gatehouse: Gatehouse, device: Device, secret: str | None = None, method: str = "hmacsha1"
) -> Client:
    creds = alink_credentials(
        device["productKey"],
        device["deviceKey"],
        secret or device["deviceSecret"],
        str(int(time.time())),
        sign_method=method,
    )
    return Client(gatehouse.mqtt_port, creds.client_id, creds.username, creds.password)


def ask(client: Client, device: Device, rest: str, method: str, params: Any) -> dict[str, Any]:
    topic = f"/sys/{device['productKey']}/{device['deviceKey']}/{rest}"
    client.publish(topic, encode_request("42", method, params), qos=1)
    reply: dict[str, Any] = orjson.loads(client.next_received(topic + "_reply").payload)
    return reply


def refusal(api: Api, device: Device) -> dict[str, Any]:
    query = {"productKey": device["productKey"], "deviceKey": device["deviceKey"]}
    entries = eventually(lambda: api("devices", "listMessages", kind="refused", **query).ok())
    return entries[0]  # type: ignore[no-any-return]


def test_an_alink_device_posts_properties_and_events(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str]
) -> None:
    device = new_device(api, make_product())
    with alink(gatehouse, device) as client:
        assert client.accepted
        reply = ask(
            client,
            device,
            "thing/event/property/post",
            "thing.event.property.post",
            {"temp": 21.5, "mode": {"value": 1, "time": 1_700_000_000_000}},
        )
        assert reply["code"] == 200 and reply["id"] == "42"
        assert reply["method"] == "thing.event.property.post" and reply["version"] == "1.0"
        bad = ask(
            client, device, "thing/event/property/post", "thing.event.property.post", {"temp": 500}
        )
        assert bad["code"] == 460 and "above max" in bad["message"]
        event = ask(
            client,
            device,
            "thing/event/overheat/post",
            "thing.event.overheat.post",
            {"value": {"temp": 99.0}, "time": 1_700_000_000_000},
        )
        assert event["code"] == 200
        shapeless = ask(
            client, device, "thing/event/property/post", "thing.event.property.post", [1]
        )
        assert shapeless["code"] == 460
    query = {"productKey": device["productKey"], "deviceKey": device["deviceKey"]}
    latest = eventually(lambda: api("devices", "getLatest", **query).ok().get("mode"))
    assert latest == {"value": 1, "time": 1_700_000_000_000}


def test_every_alink_sign_method_is_accepted(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str]
) -> None:
    product = make_product()
    for method in ("hmacsha1", "hmacsha256", "hmacmd5"):
        with alink(gatehouse, new_device(api, product), method=method) as client:
            assert client.accepted, method


def test_alink_refusals_are_recorded_in_alink_form(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str]
) -> None:
    product = make_product()
    wrong = new_device(api, product)
    with alink(gatehouse, wrong, secret="not-the-secret") as client:
        assert client.connack == 5
    assert refusal(api, wrong)["code"] == 742
    disabled = new_device(api, product)
    api("devices", "disable", productKey=product, deviceKey=disabled["deviceKey"]).ok()
    with alink(gatehouse, disabled) as client:
        assert client.connack == 5
    assert refusal(api, disabled)["code"] == 6204


def test_commands_reach_an_alink_device_in_alink(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str]
) -> None:
    device = new_device(api, make_product())
    query = {"productKey": device["productKey"], "deviceKey": device["deviceKey"]}
    base = f"/sys/{device['productKey']}/{device['deviceKey']}/thing/service"
    with alink(gatehouse, device) as client:
        held = api(
            "commands",
            "setMeasurepoint",
            {"measurepoints": {"target": 20}},
            pendingTtl="30",
            **query,
        ).ok()
        message = client.next_received(f"{base}/property/set")
        body = orjson.loads(message.payload)
        assert body["method"] == "thing.service.property.set" and body["params"] == {"target": 20}
        reply = {"id": body["id"], "code": 200, "data": {}}
        client.publish(message.topic + "_reply", orjson.dumps(reply), qos=1)
        done = eventually(
            lambda: api("commands", "get", commandId=held["commandId"]).ok()["state"] == "succeeded"
        )
        assert done


def alink_sub(device: Device, client_id: str = "", timestamp: str = "") -> dict[str, str]:
    """A sub-device entry signed as linkkit signs it: HMAC-SHA256 with its own secret."""
    client_id = client_id or f"{device['productKey']}&{device['deviceKey']}"
    timestamp = timestamp or str(int(time.time() * 1000))
    content = {
        "clientId": client_id,
        "deviceName": device["deviceKey"],
        "productKey": device["productKey"],
        "timestamp": timestamp,
    }
    return {
        "productKey": device["productKey"],
        "deviceName": device["deviceKey"],
        "clientId": client_id,
        "timestamp": timestamp,
        "signmethod": "hmacsha256",
        "sign": alink_sign(device["deviceSecret"], content, "hmacsha256"),
    }


def test_an_alink_gateway_logs_in_sub_devices_all_or_nothing(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str]
) -> None:
    gateway = new_device(api, make_product(deviceType="gateway"))
    sub_product = make_product(deviceType="subdevice")
    subs = [new_device(api, sub_product) for _ in range(3)]
    stranger = new_device(api, sub_product)
    ext = f"/ext/session/{gateway['productKey']}/{gateway['deviceKey']}"
    with alink(gatehouse, gateway) as client:
        added = ask(
            client, gateway, "thing/topo/add", "thing.topo.add", [alink_sub(s) for s in subs]
        )
        assert added["code"] == 200 and added["method"] == "thing.topo.add"
        # One sub-device outside the topology: nobody is logged in (all or nothing).
        batch = [alink_sub(s) for s in [*subs[:2], stranger]]
        topic = f"{ext}/combine/batch_login"
        client.publish(
            topic, encode_request("7", "", {"signMethod": "hmacsha256", "deviceList": batch}), qos=0
        )
        refused = orjson.loads(client.next_received(topic + "_reply").payload)
        assert refused["code"] == 740 and len(refused["data"]) == 1
        query = {"productKey": sub_product, "deviceKey": subs[0]["deviceKey"]}
        assert api("devices", "get", **query).ok()["state"] == "inactive"
        client.publish(
            topic, encode_request("8", "", {"deviceList": [alink_sub(s) for s in subs]}), 0
        )
        done = orjson.loads(client.next_received(topic + "_reply").payload)
        assert done["code"] == 200 and len(done["data"]) == 3
        post = ask(
            client,
            subs[0],
            "thing/event/property/post",
            "thing.event.property.post",
            {"temp": 18.0},
        )
        assert post["code"] == 200 and "method" in post
        too_many = {"deviceList": [alink_sub(subs[0])] * 51}
        client.publish(topic, encode_request("9", "", too_many), 0)
        assert orjson.loads(client.next_received(topic + "_reply").payload)["code"] == 460
        logout = f"{ext}/combine/batch_logout"
        entries = [{"productKey": s["productKey"], "deviceName": s["deviceKey"]} for s in subs]
        client.publish(logout, encode_request("10", "", entries), 0)
        assert orjson.loads(client.next_received(logout + "_reply").payload)["code"] == 200
        eventually(lambda: api("devices", "get", **query).ok()["state"] == "offline")


def test_an_alink_gateway_losing_a_sub_device_gets_topo_change(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str]
) -> None:
    gateway_product = make_product(deviceType="gateway")
    first, second = new_device(api, gateway_product), new_device(api, gateway_product)
    sub = new_device(api, make_product(deviceType="subdevice"))
    with alink(gatehouse, first) as one, alink(gatehouse, second) as two:
        assert ask(one, first, "thing/topo/add", "thing.topo.add", [alink_sub(sub)])["code"] == 200
        assert ask(two, second, "thing/topo/add", "thing.topo.add", [alink_sub(sub)])["code"] == 200
        topic = f"/sys/{first['productKey']}/{first['deviceKey']}/thing/topo/change"
        notice = orjson.loads(one.next_received(topic).payload)
        assert notice["method"] == "thing.topo.change" and notice["params"]["status"] == 1
        assert notice["params"]["subList"] == [
            {"productKey": sub["productKey"], "deviceName": sub["deviceKey"]}
        ]


def test_an_alink_gateway_registers_sub_devices(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str]
) -> None:
    gateway = new_device(api, make_product(deviceType="gateway"))
    dynamic = make_product(deviceType="subdevice", dynamicActivateEnabled=True)
    name = f"alinkreg{int(time.time() * 1000) % 10_000_000}"
    with alink(gatehouse, gateway) as client:
        reply = ask(
            client,
            gateway,
            "thing/sub/register",
            "thing.sub.register",
            [{"productKey": dynamic, "deviceName": name}],
        )
    assert reply["code"] == 200
    assert reply["data"][0]["deviceName"] == name and reply["data"][0]["deviceSecret"]


def test_an_unknown_alink_device_is_refused_with_alinks_code(
    gatehouse: Gatehouse, make_product: Callable[..., str]
) -> None:
    ghost = {"productKey": make_product(), "deviceKey": "ghostalink1", "deviceSecret": "whatever99"}
    with alink(gatehouse, ghost) as client:
        assert client.connack == 5
    # Nothing is recorded against a device that does not exist; the log says why.
    eventually(lambda: "ghostalink1: the device does not exist (6100)" in gatehouse.log())
