"""Authentication, organisations kept apart, and requests that are malformed as such."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from simulators.platform import with_mandatory
from tests.conftest import THERMOSTAT_TSL, unique
from tests.server import API, Api, Gatehouse


def test_no_credentials(gatehouse: Gatehouse) -> None:
    response = httpx.post(f"{gatehouse.url}{API}/products", params={"action": "list"})
    assert response.status_code == 401
    assert response.json()["code"] == 99401
    assert response.headers["www-authenticate"].startswith("Basic")


def test_wrong_credentials(gatehouse: Gatehouse) -> None:
    for key, secret in [
        (gatehouse.access_key, "wrong"),
        ("nobody", gatehouse.access_secret),
    ]:
        reply = gatehouse.client(key, secret)("products", "list")
        assert (reply.status, reply.code) == (401, 99401)
        assert "wrong access key or secret" in reply.msg
    response = httpx.post(
        f"{gatehouse.url}{API}/products",
        params={"action": "list"},
        headers={"Authorization": "Basic !!!"},
    )
    assert response.status_code == 401


def test_org_id_must_be_yours(api: Api) -> None:
    reply = api("products", "list", orgId="someone-else")
    assert (reply.status, reply.code) == (403, 99403)


def test_organisations_never_see_each_other(
    api: Api, gatehouse: Gatehouse, make_product: Callable[..., str]
) -> None:
    mine = make_product()
    device = api(
        "devices", "create", {"productKey": mine, "deviceName": "d", "timezone": "+00:00"}
    ).data
    other_creds = api("organizations", "create", {"name": unique("tenant")}).data
    other = Api(gatehouse.url, other_creds["accessKey"], other_creds["accessSecret"], None)
    assert other("organizations", "get").data["orgId"] == other_creds["orgId"]

    assert other("products", "list").data == []
    assert other("products", "get", productKey=mine).status == 404
    assert other("products", "update", {"productDesc": "x"}, productKey=mine).status == 404
    assert other("products", "delete", productKey=mine).status == 404
    assert other("devices", "list", productKey=mine).status == 404
    assert other("devices", "get", productKey=mine, deviceKey=device["deviceKey"]).status == 404
    assert other("devices", "get", assetId=device["assetId"]).status == 404
    assert other("devices", "disable", assetId=device["assetId"]).status == 404
    assert (
        other("devices", "create", {"productKey": mine, "deviceName": "x", "timezone": "+00:00"})
    ).status == 404
    assert other("statistics", "get", productKey=mine).status == 404
    assert other("bindings", "bind", {"userId": "u1"}, assetId=device["assetId"]).status == 404
    # Names and model ids are per organisation.
    name = api("products", "get", productKey=mine).data["productName"]
    model_id = api("products", "get", productKey=mine).data["modelId"]
    assert other("thing-models", "get", modelId=model_id).status == 404
    other("thing-models", "create", {"modelId": model_id, "tsl": THERMOSTAT_TSL}).ok()
    body = with_mandatory({"productName": name, "modelId": model_id})
    assert other("products", "create", body, orgId=other_creds["orgId"]).data
    # Only the admin organisation makes organisations.
    reply = other("organizations", "create", {"name": "x"})
    assert (reply.status, reply.code) == (403, 99403)
    # And the first organisation's device is untouched.
    assert api("devices", "get", assetId=device["assetId"]).data["state"] == "inactive"


def test_malformed_requests(api: Api, gatehouse: Gatehouse) -> None:
    reply = api("products", "explode")
    assert reply.status == 400 and "unknown action 'explode'" in reply.msg
    assert "create, get, list, update, delete" in reply.msg
    response = api.http.post(f"{API}/products", params={"action": "create"}, content=b"{not json")
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["msg"]
    response = api.http.post(f"{API}/products")
    assert response.status_code == 400 and response.json()["code"] == 99400
    assert "action" in response.json()["msg"]
    reply = api("products", "create", [1, 2])
    assert reply.status == 400 and "must be a JSON object" in reply.msg
    reply = api("organizations", "create", {})
    assert reply.status == 400 and "name is required" in reply.msg


def test_openapi_document(gatehouse: Gatehouse) -> None:
    doc = httpx.get(f"{gatehouse.url}/openapi.json").json()
    assert f"{API}/products" in doc["paths"]
    assert f"{API}/devices" in doc["paths"]
    operation = doc["paths"][f"{API}/products"]["post"]
    assert "create" in operation["summary"]
    assert operation["requestBody"]["content"]["application/json"]["schema"]["anyOf"]
