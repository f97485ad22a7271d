"""Products over real HTTP: the EnOS shape and every product rule."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from simulators.platform import with_mandatory
from tests.conftest import THERMOSTAT_TSL, unique
from tests.server import Api

# What these tests check is stored: they run on each store (--store both).
pytestmark = pytest.mark.both_stores


ENOS_SAMPLE = {
    "productDesc": "openapi_sdk_create_test",
    "biDirectionalAuth": False,
    "modelId": "AlterTest0615",
    "dataFormat": "Custom",
    "productName": {"defaultValue": "AlterTest0615_Product", "i18nValue": {}},
    "productType": "Device",
    "dynamicActivateEnabled": False,
    "productTags": {"key1": "v1"},
}


def test_the_enos_sample_body_is_accepted_unchanged(api: Api) -> None:
    api("thing-models", "create", {"modelId": "AlterTest0615", "tsl": THERMOSTAT_TSL}).ok()
    reply = api("products", "create", ENOS_SAMPLE)
    assert reply.status == 200
    assert reply.body["code"] == 0 and reply.body["msg"] == "OK"
    assert isinstance(reply.body["requestId"], str) and reply.body["requestId"]
    product_key = reply.data
    assert isinstance(product_key, str) and len(product_key) >= 8

    product = api("products", "get", productKey=product_key).data
    assert product["productKey"] == product_key
    assert product["productType"] == "Device"
    assert product["deviceType"] == "direct"
    assert product["dataFormat"] == "Custom"
    assert product["productTags"] == {"key1": "v1"}
    assert product["defaultValidDay"] == 730 and product["maxValidDay"] == 1095
    assert product["productSecret"]


def test_defaults_and_gateway_mapping(make_product: Callable[..., str], api: Api) -> None:
    gateway = api("products", "get", productKey=make_product(productType="Gateway")).data
    assert gateway["deviceType"] == "gateway"
    assert gateway["productType"] == "Gateway"
    assert gateway["gatewayAccessMode"] is None  # the sub-device product's (issue 16)
    direct = api("products", "get", productKey=make_product()).data
    assert direct["deviceType"] == "direct"
    assert direct["bindingMode"] == "multi"
    assert direct["sharingEnabled"] is True
    assert direct["dataFormat"] == "Json"
    sub = api("products", "get", productKey=make_product(deviceType="subdevice")).data
    assert sub["deviceType"] == "subdevice" and sub["productType"] == "Device"
    assert sub["gatewayAccessMode"] == "proxy"
    tsl = api("products", "get", productKey=make_product(dataFormat="TSL")).data
    assert tsl["dataFormat"] == "Json"
    bluetooth = api("products", "get", productKey=make_product(networkMethod="Bluetooth")).data
    assert bluetooth["bindingMode"] == "alternate"


def test_product_keys_are_unique(make_product: Callable[..., str]) -> None:
    keys = {make_product() for _ in range(20)}
    assert len(keys) == 20


@pytest.mark.parametrize(
    ("settings", "fault"),
    [
        ({"defaultValidDay": 0}, "defaultValidDay"),
        ({"defaultValidDay": 3651}, "defaultValidDay"),
        ({"maxValidDay": 4000}, "maxValidDay"),
        ({"defaultValidDay": 900, "maxValidDay": 800}, "defaultValidDay 900 is above maxValidDay"),
        ({"networkMethod": "Bluetooth", "bindingMode": "multi"}, "alternate or single"),
        ({"networkMethod": "LoRa"}, "networkMethod"),
        ({"productType": "Gateway", "networkMethod": "NB-IoT"}, "2G to 5G or Wi-Fi"),
        ({"productType": "Gateway", "networkMethod": "Bluetooth"}, "2G to 5G or Wi-Fi"),
        ({"networkMethod": "4G", "encryption": "DTLS"}, "only to NB-IoT"),
        ({"networkMethod": "Wi-Fi", "powerSaving": {"mode": "PSM"}}, "only to NB-IoT"),
        ({"networkMethod": "NB-IoT", "powerSaving": {"mode": "eDRX"}}, "needs edrxCycle"),
        (
            {"networkMethod": "NB-IoT", "powerSaving": {"mode": "eDRX", "edrxCycle": 5}},
            "edrxCycle must be",
        ),
        (
            {"networkMethod": "NB-IoT", "powerSaving": {"mode": "PSM", "edrxCycle": 40.96}},
            "only to eDRX",
        ),
        ({"specifiedGateway": {"enabled": True}}, "must name gateway products or devices"),
        ({"gatewayAccessMode": "integration"}, "only to sub-device products"),
        ({"productType": "Gadget"}, "productType must be Device or Gateway"),
        ({"productType": "Gateway", "deviceType": "direct"}, "contradicts"),
        ({"bindingMode": "sometimes"}, "bindingMode"),
        ({"activationQuota": -1}, "activationQuota"),
        ({"colour": "red"}, "product.colour: not a known field"),
        ({"productName": ""}, "productName"),
        ({"productName": {"defaultValue": "x" * 101}}, "productName"),
    ],
)
def test_bad_settings_are_refused(
    api: Api, model_id: str, settings: dict[str, Any], fault: str
) -> None:
    name = unique("p")
    reply = api(
        "products", "create", with_mandatory({"productName": name, "modelId": model_id, **settings})
    )
    assert reply.status == 400, reply
    assert reply.code == 99400
    assert fault in reply.msg
    # Nothing half-made: the name is still free.
    assert api(
        "products", "create", with_mandatory({"productName": name, "modelId": model_id})
    ).data


def test_nb_iot_power_saving_and_encryption(make_product: Callable[..., str], api: Api) -> None:
    key = make_product(
        networkMethod="NB-IoT",
        encryption="DTLS",
        powerSaving={"mode": "eDRX", "edrxCycle": 81.92},
    )
    product = api("products", "get", productKey=key).data
    assert product["powerSaving"] == {"mode": "eDRX", "edrxCycle": 81.92, "qmode": False}
    assert product["encryption"] == "DTLS"


def test_duplicate_name_is_refused(api: Api, model_id: str) -> None:
    name = unique("dup")
    api("products", "create", with_mandatory({"productName": name, "modelId": model_id})).ok()
    reply = api(
        "products",
        "create",
        with_mandatory({"productName": {"defaultValue": name}, "modelId": model_id}),
    )
    assert (reply.status, reply.code) == (409, 99409)
    assert name in reply.msg


def test_unknown_model_is_refused(api: Api) -> None:
    reply = api(
        "products",
        "create",
        with_mandatory({"productName": unique("p"), "modelId": "no-such-model"}),
    )
    assert (reply.status, reply.code) == (400, 11699)  # EnOS v2.1's code
    assert "modelId 'no-such-model' does not exist" in reply.msg


def test_specified_gateway_names_real_gateways(make_product: Callable[..., str], api: Api) -> None:
    gateway = make_product(productType="Gateway")
    direct = make_product()
    gw_device = api(
        "devices", "create", {"productKey": gateway, "deviceName": "gw", "timezone": "+00:00"}
    ).data["deviceKey"]
    key = make_product(
        deviceType="subdevice",
        specifiedGateway={
            "enabled": True,
            "gatewayProductKeys": [gateway],
            "gatewayDevices": [{"productKey": gateway, "deviceKey": gw_device}],
        },
    )
    assert api("products", "get", productKey=key).data["specifiedGateway"]["enabled"] is True

    cases: list[tuple[dict[str, Any], str]] = [
        ({"gatewayProductKeys": [direct]}, "is not a gateway"),
        ({"gatewayProductKeys": ["nosuchproduct"]}, "does not exist"),
        ({"gatewayDevices": [{"productKey": gateway, "deviceKey": "nosuch"}]}, "does not exist"),
    ]
    for named, fault in cases:
        reply = api(
            "products",
            "create",
            with_mandatory(
                {
                    "productName": unique("p"),
                    "modelId": api("products", "get", productKey=direct).data["modelId"],
                    "deviceType": "subdevice",
                    "specifiedGateway": {"enabled": True, **named},
                }
            ),
        )
        assert (reply.status, reply.code) == (400, 99400), reply
        assert fault in reply.msg

    reply = api(
        "products",
        "update",
        {"specifiedGateway": {"enabled": True, "gatewayProductKeys": [gateway]}},
        productKey=gateway,
    )
    assert reply.status == 400 and "only to sub-device products" in reply.msg


def test_update_validates_the_merged_settings(make_product: Callable[..., str], api: Api) -> None:
    key = make_product(networkMethod="NB-IoT", powerSaving={"mode": "PSM"})
    updated = api("products", "update", {"productDesc": "new words"}, productKey=key).data
    assert updated["productDesc"] == "new words"
    assert updated["powerSaving"] == {"mode": "PSM", "edrxCycle": None, "qmode": False}
    reply = api("products", "update", {"networkMethod": "4G"}, productKey=key)
    assert reply.status == 400 and "only to NB-IoT" in reply.msg
    reply = api("products", "update", {"productKey": "other"}, productKey=key)
    assert reply.status == 400 and "productKey cannot change" in reply.msg
    reply = api("products", "update", {"maxValidDay": 100}, productKey=key)
    assert reply.status == 400 and "above maxValidDay" in reply.msg
    assert api("products", "get", productKey=key).data["maxValidDay"] == 1095


def test_device_type_is_fixed_once_devices_exist(
    make_product: Callable[..., str], api: Api
) -> None:
    key = make_product()
    assert api("products", "update", {"productType": "Gateway"}, productKey=key).data
    assert api("products", "update", {"deviceType": "direct"}, productKey=key).data
    api("devices", "create", {"productKey": key, "deviceName": "d", "timezone": "+08:00"}).ok()
    reply = api("products", "update", {"deviceType": "subdevice"}, productKey=key)
    assert (reply.status, reply.code) == (409, 99409)
    assert "has devices" in reply.msg


def test_delete(make_product: Callable[..., str], api: Api) -> None:
    key = make_product()
    device = api(
        "devices", "create", {"productKey": key, "deviceName": "d", "timezone": "+08:00"}
    ).data
    reply = api("products", "delete", productKey=key)
    assert reply.status == 409 and "1 devices" in reply.msg
    api("devices", "delete", productKey=key, deviceKey=device["deviceKey"]).ok()
    api("products", "delete", productKey=key).ok()
    reply = api("products", "get", productKey=key)
    assert (reply.status, reply.code) == (404, 99404)


def test_list_pages(api: Api, make_product: Callable[..., str]) -> None:
    for _ in range(3):
        make_product()
    first = api("products", "list", pageNo=1, pageSize=2)
    assert len(first.data) == 2
    total = first.body["pagination"]["totalSize"]
    assert total >= 3
    keys: list[str] = []
    pages = (total + 1) // 2
    for page in range(1, pages + 1):
        keys += [p["productKey"] for p in api("products", "list", pageNo=page, pageSize=2).data]
    assert len(keys) == len(set(keys)) == total
    reply = api("products", "list", pageSize=5000)
    assert reply.status == 400 and "pageSize" in reply.msg


def test_missing_product_key(api: Api) -> None:
    reply = api("products", "get")
    assert reply.status == 400 and "productKey is required" in reply.msg
