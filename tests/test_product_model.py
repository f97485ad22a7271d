"""The product model as Quectel's Developer Center and EnOS define it (issue 16), on a
real `gatehouse serve`: the network, platform and power-saving rules, the sub-device
product's gateway settings, categories, projects, development status, the product
image, the list order, sharing, and EnOS's codes and request ids."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from simulators.platform import with_mandatory
from tests.conftest import unique
from tests.devices import connect, new_device, request, topic
from tests.server import Api, Gatehouse

Device = dict[str, str]
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
JPEG = b"\xff\xd8\xff\xe0" + b"\x01" * 64


def refused(reply: Any, status: int, words: str) -> None:
    assert reply.status == status, reply
    assert words in reply.msg, reply.msg


def create(api: Api, model_id: str | None, **settings: Any) -> Any:
    body = {"productName": unique("p"), **settings}
    if model_id is not None:
        body["modelId"] = model_id
    return api("products", "create", with_mandatory(body))


def product(api: Api, key: str) -> dict[str, Any]:
    data: dict[str, Any] = api("products", "get", productKey=key).data
    return data


# -- network connection method, connected platform, encryption, power saving ------------------


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ({"deviceType": "subdevice", "networkMethod": "NB-IoT"}, "sub-device product has no"),
        ({"deviceType": "subdevice", "networkMethod": "Wi-Fi"}, "sub-device product has no"),
        ({"deviceType": "gateway", "networkMethod": "NB-IoT"}, "2G to 5G or Wi-Fi"),
        ({"networkMethod": "Wi-Fi", "connectedPlatform": "DeveloperCenter"}, "only to NB-IoT"),
        ({"networkMethod": "NB-IoT", "connectedPlatform": "my cloud"}, "connectedPlatform"),
        (
            {
                "networkMethod": "NB-IoT",
                "connectedPlatform": "DeveloperCenter",
                "encryption": "DTLS",
            },
            "chosen on connectedPlatform ChinaTelecomAEP",
        ),
        (
            {
                "networkMethod": "NB-IoT",
                "connectedPlatform": "DeveloperCenter",
                "powerSaving": {"mode": "PSM"},
            },
            "chosen on connectedPlatform ChinaTelecomAEP",
        ),
        ({"networkMethod": "NB-IoT", "connectedPlatform": "ChinaTelecomAEP"}, "needs powerSaving"),
        ({"networkMethod": "NB-IoT", "powerSaving": {"mode": "PSM", "qmode": True}}, "only to DRX"),
    ],
)
def test_network_platform_and_power_saving_rules(
    api: Api, model_id: str, settings: dict[str, Any], words: str
) -> None:
    refused(create(api, model_id, **settings), 400, words)


def test_the_platform_is_nb_iots_and_aep_carries_encryption_and_power_saving(
    api: Api, make_product: Callable[..., str]
) -> None:
    plain = product(api, make_product(networkMethod="NB-IoT"))
    assert plain["connectedPlatform"] == "DeveloperCenter"
    assert plain["encryption"] is None and plain["powerSaving"] is None
    aep = product(
        api,
        make_product(
            networkMethod="NB-IoT",
            connectedPlatform="China Telecom AEP",  # the console's label is accepted
            powerSaving={"mode": "DRX", "qmode": True},
        ),
    )
    assert aep["connectedPlatform"] == "ChinaTelecomAEP"
    assert aep["encryption"] == "DTLS"  # secure unless plaintext is chosen
    assert aep["powerSaving"] == {"mode": "DRX", "edrxCycle": None, "qmode": True}
    assert product(api, make_product(networkMethod="4G"))["connectedPlatform"] is None


def reboot(api: Api, device: Device, delay: int) -> Any:
    return api(
        "commands",
        "invokeService",
        {"inputData": {"delay": delay}},
        productKey=device["productKey"],
        deviceKey=device["deviceKey"],
        serviceId="reboot",
        pendingTtl="60",
    ).ok()


def post(client: Any, device: Device) -> None:
    reply = request(client, device, "thing/measurepoint/post", {"measurepoints": {"temp": 1}})
    assert reply["code"] == 200


@pytest.mark.parametrize(
    "settings",
    [
        {"networkMethod": "NB-IoT", "powerSaving": {"mode": "DRX", "qmode": True}},
        {"networkMethod": "NB-IoT", "connectedPlatform": "DeveloperCenter"},
    ],
    ids=["drx-qmode", "developer-center"],
)
def test_qmode_and_the_developer_center_hold_commands_for_the_wake_window(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str], settings: dict[str, Any]
) -> None:
    device = new_device(api, make_product(**settings))
    with connect(gatehouse.mqtt_port, device) as client:
        held = reboot(api, device, 4)
        assert held["state"] == "pending"
        # A SUBACK round trip: anything sent before it would have arrived by now.
        assert client.subscribe(topic(device, "thing/service/+")) <= 2
        assert client.received.empty()  # connected, but reachable only after an uplink
        post(client, device)
        message = client.next_received(topic(device, "thing/service/reboot"))
        assert orjson.loads(message.payload)["params"]["delay"] == 4


def test_drx_without_qmode_delivers_at_once(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str]
) -> None:
    device = new_device(api, make_product(networkMethod="NB-IoT", powerSaving={"mode": "DRX"}))
    with connect(gatehouse.mqtt_port, device) as client:
        reboot(api, device, 5)
        message = client.next_received(topic(device, "thing/service/reboot"))
        assert orjson.loads(message.payload)["params"]["delay"] == 5


# -- the sub-device product's gateway settings --------------------------------------------------


def test_specified_gateway_and_access_mode_are_the_sub_device_products(
    api: Api, model_id: str, make_product: Callable[..., str]
) -> None:
    gateway = make_product(deviceType="gateway")
    named = {"enabled": True, "gatewayProductKeys": [gateway]}
    for device_type in ("direct", "gateway"):
        refused(
            create(api, model_id, deviceType=device_type, gatewayAccessMode="proxy"),
            400,
            "gatewayAccessMode applies only to sub-device products",
        )
        refused(
            create(api, model_id, deviceType=device_type, specifiedGateway=named),
            400,
            "specifiedGateway applies only to sub-device products",
        )
    sub = product(
        api,
        make_product(
            deviceType="subdevice", gatewayAccessMode="integration", specifiedGateway=named
        ),
    )
    assert sub["gatewayAccessMode"] == "integration"
    assert sub["specifiedGateway"]["gatewayProductKeys"] == [gateway]
    assert product(api, make_product(deviceType="subdevice"))["gatewayAccessMode"] == "proxy"


# -- categories ---------------------------------------------------------------------------------


def test_the_catalogue_lists_the_four_kinds_and_standard_models(api: Api) -> None:
    categories = {c["categoryId"]: c for c in api("categories", "list").data}
    assert {c["kind"] for c in categories.values()} == {
        "Self-defined Development",
        "Solutions By Industry",
        "Defined Standard TSL Model",
        "Customized Categories on QuecOne",
    }
    for standard in ("th-sensor", "smart-plug", "gateway"):
        assert categories[standard]["kind"] == "Defined Standard TSL Model"
        assert categories[standard]["tsl"]["properties"]
    assert api("categories", "get", categoryId="smart-plug").data["modelId"] == "std_smart_plug"
    refused(api("categories", "get", categoryId="nope"), 404, "does not exist")


def test_a_product_in_a_standard_category_starts_with_its_model(api: Api, model_id: str) -> None:
    made = create(api, None, category="th-sensor").ok()
    sensor = product(api, made)
    assert sensor["category"] == "th-sensor" and sensor["modelId"] == "std_th_sensor"
    model = api("thing-models", "get", modelId="std_th_sensor").data
    assert {p["identifier"] for p in model["tsl"]["properties"]} >= {"temperature", "humidity"}
    assert create(api, None, category="th-sensor").ok()  # the model is reused
    refused(create(api, model_id, category="th-sensor"), 400, "modelId must be std_th_sensor")
    refused(create(api, None, category="gateway"), 400, "is for gateway products")
    refused(create(api, model_id, category="a sensor"), 400, "category must be one of")
    assert product(api, create(api, model_id).ok())["category"] == "self-defined"


# -- projects ------------------------------------------------------------------------------------


def test_products_live_in_projects_and_names_stay_unique_per_organisation(
    api: Api, model_id: str
) -> None:
    projects = api("projects", "list").data
    assert [p["projectId"] for p in projects][:1] == ["default"]
    project = api("projects", "create", {"name": unique("proj")}).data
    inside = create(api, model_id, projectId=project["projectId"]).ok()
    outside = create(api, model_id).ok()
    assert product(api, inside)["projectId"] == project["projectId"]
    assert product(api, outside)["projectId"] == "default"
    listed = [p["productKey"] for p in api("products", "list", projectId=project["projectId"]).data]
    assert listed == [inside]
    assert outside in [p["productKey"] for p in api("products", "list", projectId="default").data]
    refused(create(api, model_id, projectId="nosuch"), 404, "project 'nosuch' does not exist")
    name = product(api, inside)["productName"]["defaultValue"]
    refused(
        api("products", "create", with_mandatory({"productName": name, "modelId": model_id})),
        409,
        "exists",
    )


# -- development status, image, list order, editing ----------------------------------------------


def test_release_freezes_the_definition_but_not_name_binding_or_image(
    api: Api, model_id: str, make_product: Callable[..., str]
) -> None:
    key = make_product()
    assert product(api, key)["developmentStatus"] == "development"
    released = api("products", "release", productKey=key).data
    assert released["developmentStatus"] == "released" and released["releasedAt"]
    refused(api("products", "update", {"networkMethod": "4G"}, productKey=key), 409, "released")
    refused(api("products", "update", {"dataFormat": "Custom"}, productKey=key), 409, "released")
    renamed = api(
        "products", "update", {"productName": unique("n"), "bindingMode": "single"}, productKey=key
    ).data
    assert renamed["bindingMode"] == "single"
    encoded = base64.b64encode(PNG).decode()
    assert api("product-images", "put", {"imageBase64": encoded}, productKey=key).ok()
    model = api("thing-models", "get", modelId=model_id).data
    body = {"modelId": model_id, "tsl": model["tsl"]}
    refused(api("thing-models", "update", body), 409, "frozen")
    refused(api("products", "delete", productKey=key), 409, "released")
    refused(api("products", "release", productKey=key), 409, "released already")


def test_the_product_image_is_stored_served_replaced_and_removed(
    api: Api, make_product: Callable[..., str]
) -> None:
    key = make_product()
    assert product(api, key)["hasImage"] is False
    refused(api("product-images", "get", productKey=key), 404, "has no image")

    def put(content: bytes) -> Any:
        body = {"imageBase64": base64.b64encode(content).decode()}
        return api("product-images", "put", body, productKey=key)

    assert put(PNG).data["hasImage"] is True
    image = api("product-images", "get", productKey=key).data
    assert image["contentType"] == "image/png"
    assert base64.b64decode(image["imageBase64"]) == PNG
    put(JPEG).ok()
    image = api("product-images", "get", productKey=key).data
    assert (image["contentType"], base64.b64decode(image["imageBase64"])) == ("image/jpeg", JPEG)
    refused(put(b"GIF89a" + b"\x00" * 10), 400, "PNG or a JPEG")
    refused(put(PNG + b"\x00" * (1024 * 1024)), 400, "1 to 1048576 bytes")
    refused(api("product-images", "put", {"imageBase64": "%%%"}, productKey=key), 400, "base64")
    assert api("product-images", "get", productKey=key).data["contentType"] == "image/jpeg"
    api("product-images", "delete", productKey=key).ok()
    assert product(api, key)["hasImage"] is False
    refused(api("product-images", "get", productKey=key), 404, "has no image")


def test_the_product_list_is_newest_first(api: Api, model_id: str) -> None:
    project = api("projects", "create", {"name": unique("order")}).data["projectId"]
    made = [create(api, model_id, projectId=project).ok() for _ in range(3)]
    listed = [p["productKey"] for p in api("products", "list", projectId=project).data]
    assert listed == made[::-1]


def test_turning_sharing_off_keeps_shares_but_makes_no_new_one(
    api: Api, make_product: Callable[..., str]
) -> None:
    key = make_product()
    device = new_device(api, key)
    where = {"productKey": key, "deviceKey": device["deviceKey"]}
    api("bindings", "bind", {"userId": "alice"}, **where).ok()
    api("bindings", "share", {"ownerId": "alice", "userId": "bob"}, **where).ok()
    api("products", "update", {"sharingEnabled": False}, productKey=key).ok()
    users = [(b["userId"], b["role"]) for b in api("bindings", "list", **where).data]
    assert users == [("alice", "owner"), ("bob", "shared")]
    refused(
        api("bindings", "share", {"ownerId": "alice", "userId": "carol"}, **where),
        403,
        "sharing is off",
    )
    assert len(api("bindings", "list", **where).data) == 2


# -- EnOS's envelope ----------------------------------------------------------------------------


def test_request_ids_are_uuids(api: Api, make_product: Callable[..., str]) -> None:
    uuid_form = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
    reply = api("products", "get", productKey=make_product())
    assert uuid_form.fullmatch(reply.body["requestId"]), reply.body
    failed = api("products", "get", productKey="nosuchproduct")
    assert uuid_form.fullmatch(failed.body["requestId"])
