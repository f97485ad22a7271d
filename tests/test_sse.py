"""The live stream: Server-Sent Events of the organisation's stored messages over the API,
resumed with Last-Event-ID."""

from __future__ import annotations

import contextlib
import json
import queue
import threading
from collections.abc import Callable
from typing import Any

import httpx

from tests.devices import connect, new_device, request
from tests.server import API, Api, Gatehouse


def _events(response: httpx.Response, into: queue.Queue[dict[str, Any]]) -> None:
    with contextlib.suppress(httpx.HTTPError):  # the test closes the stream when done
        _read(response, into)


def _read(response: httpx.Response, into: queue.Queue[dict[str, Any]]) -> None:
    event: dict[str, Any] = {}
    for line in response.iter_lines():
        if not line:
            if "data" in event:
                into.put(event)
            event = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            event[name] = json.loads(value) if name == "data" else value


def _open(gatehouse: Gatehouse, query: dict[str, str], headers: dict[str, str]) -> Any:
    client = httpx.Client(
        base_url=gatehouse.url, auth=(gatehouse.access_key, gatehouse.access_secret), timeout=30
    )
    return client, client.stream("GET", f"{API}/stream", params=query, headers=headers)


def _post(gatehouse: Gatehouse, device: dict[str, str], *temps: float) -> None:
    with connect(gatehouse.mqtt_port, device) as client:
        for temp in temps:
            post = {"measurepoints": {"temp": temp}}
            assert request(client, device, "thing/measurepoint/post", post)["code"] == 200


def test_the_stream_carries_stored_messages_and_resumes(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str]
) -> None:
    product_key = make_product()
    device = new_device(api, product_key)
    query = {"productKey": product_key, "kinds": "measurepoints,online"}
    client, stream = _open(gatehouse, query, {})
    got: queue.Queue[dict[str, Any]] = queue.Queue()
    with stream as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        threading.Thread(target=_events, args=(response, got), daemon=True).start()
        _post(gatehouse, device, 1.0, 2.0)
        first = [got.get(timeout=15) for _ in range(3)]
    client.close()
    # One batch's messages come sorted by kind; within a kind, in order.
    assert sorted(e["event"] for e in first) == ["measurepoints", "measurepoints", "online"]
    points = [e for e in first if e["event"] == "measurepoints"]
    assert [e["data"]["value"] for e in points] == [1.0, 2.0]

    # Reconnecting after the first measurepoint: the second comes again, then what is new.
    # The same device connects again at once: its recent CONNECTs are forgotten.
    api("devices", "clearConnectBlock", productKey=product_key, deviceKey=device["deviceKey"]).ok()
    _post(gatehouse, device, 3.0)
    client, stream = _open(
        gatehouse, {**query, "kinds": "measurepoints"}, {"Last-Event-ID": points[0]["id"]}
    )
    with stream as response:
        threading.Thread(target=_events, args=(response, got), daemon=True).start()
        again = [got.get(timeout=15) for _ in range(2)]
    client.close()
    assert [e["data"]["value"] for e in again] == [2.0, 3.0]


def test_the_stream_wants_the_keys_basic_auth(gatehouse: Gatehouse) -> None:
    response = httpx.get(f"{gatehouse.url}{API}/stream", timeout=10)
    assert response.status_code == 401 and response.json()["code"] != 0
