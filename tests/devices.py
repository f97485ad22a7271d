"""Devices for integration tests: registered over the API, connected over real MQTT
with credentials signed as the EnOS SDK signs them."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

import orjson

from broker.protocol import (
    encode_request,
    enos_connect_params,
    enos_credentials,
    enos_sign,
    parse_device_topic,
)
from tests.conftest import unique
from tests.mqtt_client import TIMEOUT, Client
from tests.server import Api

_ids = itertools.count(1)


def new_device(api: Api, product_key: str, **fields: Any) -> dict[str, str]:
    """Register a device; returns its credentials (productKey, deviceKey, deviceSecret)."""
    body = {"productKey": product_key, "deviceName": unique("dev"), "timezone": "+08:00"}
    credentials: dict[str, str] = api("devices", "create", {**body, **fields}).ok()
    return credentials


def connect(
    port: int,
    device: dict[str, str],
    *,
    secret: str | None = None,
    sign_method: str = "hmacsha256",
    timestamp: str | None = None,
    **options: Any,
) -> Client:
    creds = enos_credentials(
        device["productKey"],
        device["deviceKey"],
        secret or device["deviceSecret"],
        timestamp or str(time.time() * 1000),
        sign_method=sign_method,
    )
    return Client(port, creds.client_id, creds.username, creds.password, **options)


def topic(device: dict[str, str], rest: str) -> str:
    return f"/sys/{device['productKey']}/{device['deviceKey']}/{rest}"


def ext_topic(device: dict[str, str], rest: str) -> str:
    return f"/ext/session/{device['productKey']}/{device['deviceKey']}/{rest}"


def request(
    client: Client,
    device: dict[str, str],
    rest: str,
    params: Any,
    *,
    method: str = "",
    qos: int = 1,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Publish a request on `/sys/{pk}/{dk}/{rest}`; return the reply on its `_reply`."""
    return ask(client, topic(device, rest), params, method=method, qos=qos, extra=extra)


def ask(
    client: Client,
    full_topic: str,
    params: Any,
    *,
    method: str = "",
    qos: int = 1,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Publish a request on any topic; return the reply that arrives on `<topic>_reply`."""
    request_id = str(next(_ids))
    parsed = parse_device_topic(full_topic)
    rest = parsed.rest if parsed is not None else full_topic
    payload = encode_request(request_id, method or rest.replace("/", "."), params)
    if extra:
        payload = orjson.dumps({**orjson.loads(payload), **extra})
    return send(client, full_topic, payload, request_id, qos=qos)


def signed_sub(device: dict[str, str], secret: str | None = None) -> dict[str, str]:
    """A sub-device entry as a gateway sends it in topo/add and combine/login."""
    client_id = f"{device['productKey']}.{device['deviceKey']}"
    timestamp = str(int(time.time() * 1000))
    params = enos_connect_params(client_id, device["productKey"], device["deviceKey"], timestamp)
    return {
        "productKey": device["productKey"],
        "deviceKey": device["deviceKey"],
        "clientId": client_id,
        "timestamp": timestamp,
        "signMethod": "sha256",
        "sign": enos_sign(secret or device["deviceSecret"], params, "sha256"),
    }


def send(
    client: Client, full_topic: str, payload: bytes, request_id: str, *, qos: int = 1
) -> dict[str, Any]:
    client.publish(full_topic, payload, qos=qos)
    while True:
        message = client.next_received(full_topic + "_reply")
        reply: dict[str, Any] = orjson.loads(message.payload)
        if reply.get("id") == request_id:
            return reply


def sync(api: Api) -> None:
    """Wait until what devices sent so far is stored (the server's barrier)."""
    api("broker", "sync").ok()


def lift_connect_limit(api: Api, device: dict[str, str]) -> None:
    """Forget the device's recent CONNECTs, instead of waiting out one a second."""
    query = {"productKey": device["productKey"], "deviceKey": device["deviceKey"]}
    api("devices", "clearConnectBlock", **query).ok()


def eventually(check: Callable[[], Any], timeout: float = TIMEOUT) -> Any:
    """Poll until `check` returns something truthy (for data written behind)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s: {check}")
        time.sleep(0.05)
