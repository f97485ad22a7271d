"""Activation codes are codes, not a number (issue 16, Quectel's "Purchase Activation
Code"), on a real `gatehouse serve` and real MQTT: a purchase adds a batch of codes with
a validity period; a device takes one when it activates; when its code ends it takes
another; with none left it is refused, an online one is disconnected, and it is
inactive again. The totals come through the API, and everything survives a restart."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import THERMOSTAT_TSL
from tests.devices import connect, eventually, lift_connect_limit, new_device
from tests.server import Api, Gatehouse


def totals(api: Api, product_key: str) -> dict[str, int]:
    data: dict[str, int] = api("activation-codes", "get", productKey=product_key).ok()
    return data


def purchase(api: Api, product_key: str, count: int, **period: int) -> dict[str, Any]:
    body = {"count": count, **period}
    data: dict[str, Any] = api("activation-codes", "purchase", body, productKey=product_key).ok()
    return data


def state(api: Api, device: dict[str, str]) -> str:
    query = {"productKey": device["productKey"], "deviceKey": device["deviceKey"]}
    found: str = api("devices", "get", **query).ok()["state"]
    return found


def counts(api: Api, product_key: str) -> tuple[int, int, int]:
    found = totals(api, product_key)
    return found["total"], found["available"], found["consumed"]


def test_a_product_without_codes_admits_as_before(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str]
) -> None:
    product_key = make_product()
    device = new_device(api, product_key)
    with connect(gatehouse.mqtt_port, device) as client:
        assert client.accepted
    assert counts(api, product_key) == (0, 0, 0)


@pytest.mark.both_stores
def test_devices_take_codes_and_are_refused_when_none_is_left(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str]
) -> None:
    product_key = make_product()
    first, second, third = (new_device(api, product_key) for _ in range(3))
    bought = purchase(api, product_key, 2, validDays=30)
    assert bought["count"] == 2 and len(set(bought["codes"])) == 2
    assert bought["validSeconds"] == 30 * 86_400
    assert counts(api, product_key) == (2, 2, 0)
    with connect(gatehouse.mqtt_port, first) as one, connect(gatehouse.mqtt_port, second) as two:
        assert one.accepted and two.accepted
        eventually(lambda: counts(api, product_key) == (2, 0, 2))  # written after admission
        with connect(gatehouse.mqtt_port, third) as refused:
            assert not refused.accepted
        assert state(api, third) == "inactive"
    # A device that holds a code that has not ended connects again without taking one.
    lift_connect_limit(api, first)
    with connect(gatehouse.mqtt_port, first) as again:
        assert again.accepted
    assert counts(api, product_key) == (2, 0, 2)
    listed = api("activation-codes", "list", productKey=product_key).ok()
    assert {c["deviceKey"] for c in listed} == {first["deviceKey"], second["deviceKey"]}
    assert {c["status"] for c in listed} == {"in-use"}
    # More codes: the refused device gets in.
    purchase(api, product_key, 1, validDays=1)
    lift_connect_limit(api, third)
    with connect(gatehouse.mqtt_port, third) as admitted:
        assert admitted.accepted
    eventually(lambda: counts(api, product_key) == (3, 0, 3))


def test_an_ended_code_is_replaced_by_the_next_one(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str]
) -> None:
    product_key = make_product()
    device = new_device(api, product_key)
    purchase(api, product_key, 1, validSeconds=1)
    with connect(gatehouse.mqtt_port, device) as client:
        assert client.accepted
        purchase(api, product_key, 1, validDays=1)
        # The first code lasts a second: then the device takes the second one and stays.
        eventually(lambda: totals(api, product_key)["consumed"] == 2)
        assert totals(api, product_key)["inUse"] == 1
        assert not client.disconnected.is_set()
    assert state(api, device) != "inactive"


def test_with_no_code_left_an_online_device_is_disconnected_and_inactive(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str]
) -> None:
    product_key = make_product()
    device = new_device(api, product_key)
    purchase(api, product_key, 1, validSeconds=1)
    with connect(gatehouse.mqtt_port, device) as client:
        assert client.accepted
        # Its one code lasts a second (the behaviour under test): then it is logged out.
        assert client.disconnected.wait(10)
    eventually(lambda: state(api, device) == "inactive")
    found = totals(api, product_key)
    assert (found["available"], found["consumed"], found["inUse"]) == (0, 1, 0)
    lift_connect_limit(api, device)
    with connect(gatehouse.mqtt_port, device) as again:
        assert not again.accepted


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"count": 0, "validDays": 1}, "count"),
        ({"count": 10_001, "validDays": 1}, "count"),
        ({"count": 1}, "validDays or validSeconds"),
        ({"count": 1, "validDays": 1, "validSeconds": 5}, "validDays or validSeconds"),
        ({"count": 1, "validDays": 3651}, "validDays"),
        ({"count": 1, "validDays": 1, "price": 3}, "price"),
    ],
)
def test_a_bad_purchase_is_refused_and_nothing_is_stored(
    api: Api, make_product: Callable[..., str], body: dict[str, Any], words: str
) -> None:
    product_key = make_product()
    reply = api("activation-codes", "purchase", body, productKey=product_key)
    assert reply.status == 400 and words in reply.msg, reply
    assert counts(api, product_key) == (0, 0, 0)


def test_codes_of_another_organisations_product_are_not_found(api: Api) -> None:
    reply = api("activation-codes", "get", productKey="nosuchpk1")
    assert reply.status == 404 and reply.code == 99404 and "nosuchpk1" in reply.msg


@pytest.mark.both_stores
def test_codes_and_who_holds_them_survive_a_restart(
    new_gatehouse: Callable[..., Gatehouse], tmp_path: Path
) -> None:
    server = new_gatehouse(tmp_path / "data")
    api = server.client()
    model = "codes_model"
    api("thing-models", "create", {"modelId": model, "tsl": THERMOSTAT_TSL}).ok()
    product_key = api(
        "products",
        "create",
        {
            "productName": "codes",
            "productType": "Device",
            "dataFormat": "Json",
            "biDirectionalAuth": False,
            "modelId": model,
        },
    ).ok()
    first, second = new_device(api, product_key), new_device(api, product_key)
    purchase(api, product_key, 2, validDays=1)
    with connect(server.mqtt_port, first) as client:
        assert client.accepted
    eventually(lambda: totals(api, product_key)["consumed"] == 1)
    server.stop()
    server = new_gatehouse(
        tmp_path / "data",
        org_id=server.org_id,
        access_key=server.access_key,
        access_secret=server.access_secret,
    )
    api = server.client()
    with connect(server.mqtt_port, first) as client:
        assert client.accepted  # it holds its code: none is taken
    assert counts(api, product_key) == (2, 1, 1)
    with connect(server.mqtt_port, second) as client:
        assert client.accepted
    eventually(lambda: counts(api, product_key) == (2, 0, 2))
