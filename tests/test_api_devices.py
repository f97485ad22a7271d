"""Devices over real HTTP: create, batch create, state, export, limits and bad input."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import unique
from tests.server import Api, Gatehouse

# What these tests check is stored: they run on each store (--store both).
pytestmark = pytest.mark.both_stores


def device_body(product_key: str, **fields: Any) -> dict[str, Any]:
    return {
        "productKey": product_key,
        "deviceName": {"defaultValue": "d"},
        "timezone": "+08:00",
    } | fields


def test_create_returns_credentials(make_product: Callable[..., str], api: Api) -> None:
    key = make_product()
    created = api("devices", "create", device_body(key, deviceKey="meter_01.a")).data
    assert set(created) == {"productKey", "deviceKey", "deviceSecret", "assetId"}
    assert created["deviceKey"] == "meter_01.a" and created["productKey"] == key
    assert len(created["deviceSecret"]) >= 16

    shown = api("devices", "get", productKey=key, deviceKey="meter_01.a").data
    assert shown["state"] == "inactive"
    assert "deviceSecret" not in shown
    assert shown["timezone"] == "+08:00"
    by_asset = api("devices", "get", assetId=created["assetId"]).data
    assert by_asset["deviceKey"] == "meter_01.a"

    generated = api("devices", "create", device_body(key)).data["deviceKey"]
    assert 4 <= len(generated) <= 32


@pytest.mark.parametrize(
    ("fields", "fault"),
    [
        ({"deviceKey": "abc"}, "deviceKey: must be 4 to 32"),
        ({"deviceKey": "a" * 33}, "deviceKey: must be 4 to 32"),
        ({"deviceKey": "has space"}, "deviceKey: must be 4 to 32"),
        ({"deviceKey": "semi;colon"}, "deviceKey: must be 4 to 32"),
        ({"timezone": "Asia/Shanghai"}, "timezone: must look like"),
        ({"timezone": None}, "timezone"),
        ({"deviceName": None}, "deviceName"),
        ({"deviceSecret": "short"}, "deviceSecret: must be"),
        ({"firmware": "1.0"}, "device.firmware: not a known field"),
    ],
)
def test_bad_device_bodies(
    make_product: Callable[..., str], api: Api, fields: dict[str, Any], fault: str
) -> None:
    key = make_product()
    body = {k: v for k, v in device_body(key, **fields).items() if v is not None}
    reply = api("devices", "create", body)
    assert (reply.status, reply.code) == (400, 99400), reply
    assert fault in reply.msg
    assert api("devices", "list", productKey=key).data == []


def test_duplicate_device_key(make_product: Callable[..., str], api: Api) -> None:
    key = make_product()
    api("devices", "create", device_body(key, deviceKey="twin0")).ok()
    reply = api("devices", "create", device_body(key, deviceKey="twin0"))
    assert (reply.status, reply.code) == (409, 11702)
    # The same key under another product is a different device.
    assert api("devices", "create", device_body(make_product(), deviceKey="twin0")).data


def test_unknown_product(api: Api) -> None:
    reply = api("devices", "create", device_body("nosuchproduct"))
    assert (reply.status, reply.code) == (404, 99404)
    reply = api("devices", "get", productKey="nosuchproduct", deviceKey="abcd")
    assert reply.status == 404 and "does not exist" in reply.msg
    reply = api("devices", "get")
    assert reply.status == 400 and "assetId" in reply.msg


def test_update_enable_disable_delete(make_product: Callable[..., str], api: Api) -> None:
    key = make_product()
    dk = api("devices", "create", device_body(key)).data["deviceKey"]
    where = {"productKey": key, "deviceKey": dk}
    updated = api(
        "devices", "update", {"deviceName": "kitchen", "deviceTags": {"floor": "2"}}, **where
    ).data
    assert updated["deviceName"]["defaultValue"] == "kitchen"
    assert updated["deviceTags"] == {"floor": "2"}
    assert updated["timezone"] == "+08:00"
    reply = api("devices", "update", {"deviceKey": "renamed"}, **where)
    assert reply.status == 400 and "deviceKey: not a known field" in reply.msg
    reply = api("devices", "update", {"timezone": "UTC"}, **where)
    assert reply.status == 400 and "timezone" in reply.msg

    assert api("devices", "disable", **where).data["state"] == "disabled"
    assert api("devices", "get", **where).data["state"] == "disabled"
    assert api("devices", "enable", **where).data["state"] == "inactive"
    api("devices", "delete", **where).ok()
    assert api("devices", "get", **where).status == 404
    assert api("devices", "delete", **where).status == 404


def test_batch_create_is_all_or_nothing(make_product: Callable[..., str], api: Api) -> None:
    key = make_product()
    bodies = [device_body(key, deviceKey=f"unit{i:03d}") for i in range(5)]
    bodies[3]["timezone"] = "nowhere"
    reply = api("devices", "batchCreate", {"deviceList": bodies})
    assert reply.status == 400 and "deviceList[3].timezone" in reply.msg
    bodies[3]["timezone"] = "+01:00"
    bodies[4]["deviceKey"] = "unit000"
    reply = api("devices", "batchCreate", {"deviceList": bodies})
    assert (reply.status, reply.code) == (409, 11702) and "twice" in reply.msg
    assert api("devices", "list", productKey=key).data == []

    reply = api("devices", "batchCreate", {"devices": bodies})
    assert reply.status == 400 and "deviceList is required" in reply.msg
    reply = api("devices", "batchCreate", {"deviceList": []})
    assert reply.status == 400 and "give 1 to" in reply.msg


def test_batch_create_ten_thousand_and_the_product_limit(
    make_product: Callable[..., str], api: Api, gatehouse: Gatehouse
) -> None:
    key = make_product()
    bodies = [device_body(key, deviceName=f"sensor-{i}") for i in range(10_000)]
    # EnOS serves batch create under v2.0; both paths answer.
    response = api.http.post(
        "/connect-service/v2.0/devices",
        params={"action": "batchCreate", "orgId": gatehouse.org_id},
        json={"deviceList": bodies},
    )
    assert response.status_code == 200, response.text
    created = response.json()["data"]
    assert len(created) == 10_000
    assert len({d["deviceKey"] for d in created}) == 10_000
    assert len({d["assetId"] for d in created}) == 10_000
    stats = api("statistics", "get", productKey=key).data
    assert stats == {"productKey": key, "total": 10_000, "activated": 0, "online": 0}

    reply = api("devices", "create", device_body(key))
    assert (reply.status, reply.code) == (409, 11739)
    assert "limit is 10000" in reply.msg

    exported = api("devices", "exportCredentials", productKey=key, pageSize=1000, pageNo=10)
    assert len(exported.data) == 1000
    assert exported.body["pagination"]["totalSize"] == 10_000
    assert {d["deviceSecret"] for d in exported.data} <= {d["deviceSecret"] for d in created}


def test_statistics_list(make_product: Callable[..., str], api: Api) -> None:
    key = make_product()
    api("devices", "batchCreate", {"deviceList": [device_body(key)] * 3}).ok()
    stats = {s["productKey"]: s for s in api("statistics", "list", pageSize=1000).data}
    assert stats[key]["total"] == 3


def test_device_names_are_free_text(make_product: Callable[..., str], api: Api) -> None:
    key = make_product()
    name = {"defaultValue": "Küche ☕", "i18nValue": {"zh_CN": unique("厨房")}}
    dk = api("devices", "create", device_body(key, deviceName=name)).data["deviceKey"]
    assert api("devices", "get", productKey=key, deviceKey=dk).data["deviceName"] == name
