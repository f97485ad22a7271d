"""The Alink dialect over real MQTT (paho) against a real `gatehouse serve`: a device
that signs as linkkit does is admitted on the same registry and answered in Alink."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson

from broker.protocol import alink_credentials, encode_request
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
