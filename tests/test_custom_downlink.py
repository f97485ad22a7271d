"""The platform's messages to a device's custom topics (Alibaba's Pub):
`devices?action=publish` sends bytes to `/{pk}/{dk}/user/...`, delivered as they are to
who may read there, against a real `gatehouse serve` and real MQTT clients. Every bad
input is a 400 that names it, and nothing is sent."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.devices import connect, new_device
from tests.server import Api, Gatehouse, Reply
from tests.test_cli import gatehouse_cli
from tests.test_custom_topics import app_client, custom, quiet
from tests.test_product_model_access_keys import extra_key


def publish(api: Api, device: dict[str, str], body: dict[str, Any]) -> Reply:
    keys = {"productKey": device["productKey"], "deviceKey": device["deviceKey"]}
    return api("devices", "publish", body, **keys)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_bytes_published_to_a_custom_topic_reach_the_device_and_its_applications(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str]
) -> None:
    device = new_device(api, make_product())
    get = custom(device, "get")
    frame = b"\x00\xff\x10 not JSON"
    with app_client(gatehouse) as app, connect(gatehouse.mqtt_port, device) as client:
        assert client.subscribe(get, 1) == 1
        assert app.subscribe(f"/{device['productKey']}/+/user/#", 1) == 1
        done = publish(api, device, {"topic": get, "payloadBase64": b64(frame), "qos": 1}).ok()
        assert done == {"topic": get, "subscribers": 2, "online": True}
        for subscriber in (client, app):
            message = subscriber.next_received(get)
            assert (message.payload, message.qos) == (frame, 1)
        # What follows `/{pk}/{dk}/` names the same topic; QoS 0 is the default.
        done = publish(api, device, {"topic": "user/get", "payloadBase64": b64(b"2")}).ok()
        assert done["topic"] == get
        assert client.next_received(get).payload == b"2"


def test_a_device_that_is_not_subscribed_gets_nothing_and_the_answer_says_so(
    api: Api, make_product: Callable[..., str]
) -> None:
    device = new_device(api, make_product())
    done = publish(api, device, {"topic": custom(device, "get"), "payloadBase64": b64(b"x")})
    assert done.ok() == {"topic": custom(device, "get"), "subscribers": 0, "online": False}


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"payloadBase64": b64(b"x")}, "topic"),
        ({"topic": "user/get"}, "payloadBase64"),
        ({"topic": "user/get", "payloadBase64": "not base64!"}, "base64"),
        ({"topic": "user/get", "payloadBase64": 5}, "base64"),
        ({"topic": "user/get", "payloadBase64": b64(b"x"), "qos": 2}, "qos"),
        ({"topic": "user/get", "payloadBase64": b64(b"x"), "qos": True}, "qos"),
        ({"topic": "user/+", "payloadBase64": b64(b"x")}, "wildcards"),
        ({"topic": "user//get", "payloadBase64": b64(b"x")}, "empty levels"),
        ({"topic": "user", "payloadBase64": b64(b"x")}, "under"),
        ({"topic": "user/get?_sn=default", "payloadBase64": b64(b"x")}, "_sn=default"),
        ({"topic": "thing/service/reboot", "payloadBase64": b64(b"x")}, "under"),
        ({"topic": "/sys/pk/dk/thing/x", "payloadBase64": b64(b"x")}, "under"),
        ({"topic": "user/" + "x" * 1100, "payloadBase64": b64(b"x")}, "limit"),
        ({"topic": "user/get", "payloadBase64": b64(b"x" * (512 * 1024 + 1))}, "limit"),
    ],
)
def test_bad_publishes_are_refused_and_nothing_is_sent(
    gatehouse: Gatehouse,
    api: Api,
    make_product: Callable[..., str],
    body: dict[str, Any],
    says: str,
) -> None:
    device = new_device(api, make_product())
    with app_client(gatehouse) as app:
        assert app.subscribe(f"/{device['productKey']}/#", 1) == 1
        reply = publish(api, device, body)
        assert reply.status == 400 and says in reply.msg, reply
        assert quiet(app)


def test_another_devices_topic_and_a_device_that_does_not_exist_are_refused(
    api: Api, make_product: Callable[..., str]
) -> None:
    product = make_product()
    device, other = new_device(api, product), new_device(api, product)
    reply = publish(api, device, {"topic": custom(other, "get"), "payloadBase64": b64(b"x")})
    assert reply.status == 400 and "under" in reply.msg
    missing = {**device, "deviceKey": "nobody-here"}
    reply = publish(api, missing, {"topic": "user/get", "payloadBase64": b64(b"x")})
    assert reply.status == 404


def test_a_read_only_key_may_not_publish(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str]
) -> None:
    device = new_device(api, make_product())
    reader = extra_key(gatehouse, api, "read")
    reply = publish(reader, device, {"topic": "user/get", "payloadBase64": b64(b"x")})
    assert reply.status == 403 and "read only" in reply.msg


def test_the_cli_publishes_hex_text_or_a_file(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str], tmp_path: Path
) -> None:
    device = new_device(api, make_product())
    get = custom(device, "get")
    frame_file = tmp_path / "frame.bin"
    frame_file.write_bytes(b"\x01\x02\x03")
    keys = ["--product", device["productKey"], "--key", device["deviceKey"]]
    with connect(gatehouse.mqtt_port, device) as client:
        assert client.subscribe(get, 1) == 1
        for message, expected in (
            (["--hex", "00ff"], b"\x00\xff"),
            (["--text", "hello"], b"hello"),
            (["--file", str(frame_file)], b"\x01\x02\x03"),
        ):
            done = gatehouse_cli(
                "device", "publish", *keys, "user/get", *message, env=gatehouse.env()
            )
            assert done.returncode == 0, done.stderr
            assert "to 1 subscriber(s); the device is online" in done.stdout
            assert client.next_received(get).payload == expected
    refused = gatehouse_cli("device", "publish", *keys, "user/get", env=gatehouse.env())
    assert refused.returncode == 2 and "--hex, --text or --file" in refused.stderr
    refused = gatehouse_cli(
        "device", "publish", *keys, "thing/x", "--text", "x", env=gatehouse.env()
    )
    assert refused.returncode != 0 and "under" in refused.stderr
