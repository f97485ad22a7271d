"""`products?action=search` (issue 16): EnOS's Search Product, with filter expressions
on name, type, format and tags, and paging, beside `list`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import unique
from tests.server import Api


def search(api: Api, expression: str, **pagination: int) -> Any:
    body: dict[str, Any] = {"expression": expression}
    if pagination:
        body["pagination"] = pagination
    return api("products", "search", body)


def keys(api: Api, expression: str, **pagination: int) -> list[str]:
    return [p["productKey"] for p in search(api, expression, **pagination).ok()]


def test_search_filters_on_name_type_format_and_tags(
    api: Api, make_product: Callable[..., str]
) -> None:
    batch = unique("b")
    sensor = make_product(
        productName={"defaultValue": unique("Sensor"), "i18nValue": {"zh_CN": "传感器"}},
        productTags={"batch": batch, "site": "north"},
    )
    hub = make_product(
        productName=unique("Hub"), productType="Gateway", productTags={"batch": batch}
    )
    raw = make_product(
        productName=unique("Meter"),
        dataFormat="Custom",
        productTags={"batch": batch, "site": "south"},
    )
    mine = f"productTags.batch = '{batch}'"
    assert keys(api, mine) == [raw, hub, sensor]  # newest first, as list
    assert keys(api, f"{mine} and productType = 'Gateway'") == [hub]
    assert keys(api, f"{mine} and dataFormat in ('Custom', 'TSL')") == [raw]
    assert keys(api, f"{mine} and productName like 'sens'") == [sensor]
    assert keys(api, f"{mine} and productName.zh_CN like '传感'") == [sensor]
    assert keys(api, f"{mine} and productName.en_US like 'hub'") == [hub]  # default name
    assert keys(api, f"{mine} and exists(productTags.site)") == [raw, sensor]
    assert keys(api, f"{mine} and not exists(productTags.site)") == [hub]
    assert keys(api, f"{mine} and (productTags.site = 'south' or productKey in ('{hub}'))") == [
        raw,
        hub,
    ]
    page = search(api, mine, pageNo=2, pageSize=2)
    assert [p["productKey"] for p in page.ok()] == [sensor]
    assert page.body["pagination"]["totalSize"] == 3


def test_an_empty_expression_finds_what_list_finds(
    api: Api, make_product: Callable[..., str]
) -> None:
    make_product()
    listed = [p["productKey"] for p in api("products", "list", pageSize=1000).ok()]
    assert keys(api, "", pageSize=1000) == listed


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        ("productColour = 'red'", "unknown field"),
        ("productKey like 'x'", "takes = or in"),
        ("productName = ", "ends where"),
        ("productKey = 'a' nonsense", "unexpected"),
        ("productKey = 'a", "cannot read"),
        ("(" * 40 + "productKey = 'a'" + ")" * 40, "nests deeper"),
        ("productKey = 'a' or " * 200 + "productKey = 'b'", "longer than"),
        ("not productKey = 'a'", "only before exists"),
    ],
)
def test_a_bad_expression_is_a_400_that_says_why(api: Api, expression: str, words: str) -> None:
    reply = search(api, expression)
    assert reply.status == 400 and reply.code == 99400, reply
    assert words in reply.msg, reply.msg
