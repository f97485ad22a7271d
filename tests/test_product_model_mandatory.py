"""Issue 16, EnOS's Create Product: what EnOS marks Mandatory is mandatory. `orgId` in the
query and `productName`, `productType`, `dataFormat`, `biDirectionalAuth` and `modelId`
in the body; a missing one is refused (400, 99400) naming it, and nothing is stored."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from simulators.platform import with_mandatory
from tests.conftest import THERMOSTAT_TSL, unique
from tests.server import Api, Gatehouse

BODY_FIELDS = ("productName", "productType", "dataFormat", "biDirectionalAuth", "modelId")

# The request sample of EnOS's Create Product (connection-service v2.1), as the page has it.
ENOS_SAMPLE: dict[str, Any] = {
    "productDesc": "openapi_sdk_create_test",
    "biDirectionalAuth": False,
    "modelId": "AlterTest0615",
    "dataFormat": "Custom",
    "productName": {"defaultValue": "AlterTest0615_Product", "i18nValue": {}},
    "productType": "Device",
    "dynamicActivateEnabled": False,
    "productTags": {"key1": "v1"},
}


def tenant(gatehouse: Gatehouse, api: Api) -> tuple[Api, str]:
    """A new organisation's client (sent without orgId) and its orgId."""
    creds = api("organizations", "create", {"name": unique("tenant")}).ok()
    return Api(gatehouse.url, creds["accessKey"], creds["accessSecret"], None), creds["orgId"]


def names(api: Api) -> list[str]:
    return [p["productName"]["defaultValue"] for p in api("products", "list").ok()]


def refused_naming(reply: Any, *fields: str) -> None:
    assert (reply.status, reply.code) == (400, 99400), reply
    assert reply.msg.startswith("missing mandatory parameters:"), reply.msg
    for field in fields:
        assert field in reply.msg, reply.msg


@pytest.mark.parametrize("field", BODY_FIELDS)
@pytest.mark.parametrize("absent", ["left out", "null"])
def test_each_mandatory_body_field_is_required(
    api: Api, model_id: str, field: str, absent: str
) -> None:
    name = unique("p")
    body = with_mandatory({"productName": name, "modelId": model_id})
    if absent == "null":
        body[field] = None
    else:
        del body[field]
    refused_naming(api("products", "create", body), field)
    assert name not in names(api)  # nothing stored: the name is free
    api("products", "create", with_mandatory({"productName": name, "modelId": model_id})).ok()


def test_orgid_is_required_in_the_query_of_create_only(gatehouse: Gatehouse, api: Api) -> None:
    other, org_id = tenant(gatehouse, api)
    other("thing-models", "create", {"modelId": "m", "tsl": THERMOSTAT_TSL}).ok()
    body = with_mandatory({"productName": "p", "modelId": "m"})
    refused_naming(other("products", "create", body), "orgId (query)")
    assert other("products", "list").ok() == []  # other actions still leave it optional
    key = other("products", "create", body, orgId=org_id).ok()
    assert [p["productKey"] for p in other("products", "list").ok()] == [key]


def test_every_missing_parameter_is_named_at_once(gatehouse: Gatehouse, api: Api) -> None:
    other, _ = tenant(gatehouse, api)
    reply = other("products", "create", {"productDesc": "nothing else"})
    refused_naming(reply, "orgId (query)", *BODY_FIELDS)
    assert other("products", "list").ok() == []


def test_a_standard_tsl_category_stands_in_for_modelid(api: Api) -> None:
    body = with_mandatory({"productName": unique("plug"), "category": "smart-plug"})
    key = api("products", "create", body).ok()
    created = api("products", "get", productKey=key).ok()
    assert created["category"] == "smart-plug" and created["modelId"]
    # A category without a thing model of its own does not.
    name = unique("light")
    body = with_mandatory({"productName": name, "category": "quecone-light"})
    refused_naming(api("products", "create", body), "modelId")
    assert name not in names(api)


def test_the_enos_sample_body_creates_a_product_unchanged(gatehouse: Gatehouse, api: Api) -> None:
    # Its own organisation: the sample's name is fixed, and names are per organisation.
    other, org_id = tenant(gatehouse, api)
    other("thing-models", "create", {"modelId": "AlterTest0615", "tsl": THERMOSTAT_TSL}).ok()
    key = other("products", "create", ENOS_SAMPLE, orgId=org_id).ok()
    product = other("products", "get", productKey=key).ok()
    for field in ("productDesc", "biDirectionalAuth", "modelId", "dataFormat", "productName"):
        assert product[field] == ENOS_SAMPLE[field], field
    assert (product["productType"], product["productTags"]) == ("Device", {"key1": "v1"})


def test_the_cli_fills_them_in_even_without_an_org_id(gatehouse: Gatehouse, api: Api) -> None:
    model = unique("model")
    api("thing-models", "create", {"modelId": model, "tsl": THERMOSTAT_TSL}).ok()
    env = {k: v for k, v in gatehouse.env().items() if k != "GATEHOUSE_ORG_ID"}
    made = []
    for args in (("--model", model), ("--category", "gateway", "--type", "gateway")):
        name = unique("cli")
        result = subprocess.run(
            [sys.executable, "-m", "broker.cli", "product", "create", "--name", name, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        made.append(api("products", "get", productKey=result.stdout.strip()).ok())
    assert [p["productType"] for p in made] == ["Device", "Gateway"]
    assert made[0]["modelId"] == model and made[1]["category"] == "gateway"
