"""A poller's cursor over the device log: `messages?action=list` for a whole product and
`devices?action=listMessages` for one device, with `since` and `kinds`, on each store."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest

from tests.conftest import unique
from tests.devices import connect, eventually, new_device, request
from tests.mqtt_client import Client
from tests.server import Api, Gatehouse

pytestmark = pytest.mark.both_stores


def post(client: Client, device: dict[str, str], n: int) -> None:
    body = {"measurepoints": {"temp": float(n)}}
    assert request(client, device, "thing/measurepoint/post", body)["code"] == 200


def posted(entry: dict[str, Any]) -> int:
    value: int = int(orjson.loads(entry["payload"])["params"]["measurepoints"]["temp"])
    return value


def drain(api: Api, product: str, cursor: int, **query: Any) -> tuple[list[dict[str, Any]], int]:
    """Follow nextCursor, three at a time, until an answer is empty."""
    seen: list[dict[str, Any]] = []
    while True:
        reply = api("messages", "list", productKey=product, since=cursor, limit=3, **query)
        page = reply.ok()
        assert reply.body["nextCursor"] == (page[-1]["cursor"] if page else cursor)
        cursor = reply.body["nextCursor"]
        if not page:
            return seen, cursor
        seen.extend(page)


def test_a_poller_following_the_cursor_misses_and_repeats_nothing(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str]
) -> None:
    product = make_product()
    first, second = new_device(api, product), new_device(api, product)
    # Nothing yet: the cursor to start from is 0, and polling from it is empty.
    empty = api("messages", "list", productKey=product, kinds="up")
    assert (empty.ok(), empty.body["nextCursor"]) == ([], 0)
    with connect(gatehouse.mqtt_port, first) as a, connect(gatehouse.mqtt_port, second) as b:
        for n in range(4):
            post(a if n % 2 == 0 else b, first if n % 2 == 0 else second, n)
        api("broker", "sync").ok()
        seen, cursor = drain(api, product, 0, kinds="up")
        assert [posted(e) for e in seen] == [0, 1, 2, 3]  # oldest first, each once
        assert [e["deviceKey"] for e in seen] == [d["deviceKey"] for d in [first, second] * 2]
        assert all(e["kind"] == "up" and e["productKey"] == product for e in seen)
        for n in range(4, 9):
            post(b, second, n)
        api("broker", "sync").ok()
        later, cursor = drain(api, product, cursor, kinds="up")
        assert [posted(e) for e in later] == [4, 5, 6, 7, 8]
    # Both connections ended: the connection events, without the uplinks before them.
    eventually(lambda: len(api("messages", "list", productKey=product, since=cursor).ok()) == 2)
    events, _ = drain(api, product, cursor)
    assert sorted(e["kind"] for e in events) == ["offline", "offline"]
    # Without since: the newest first, and the cursor to poll from is the newest's.
    newest = api("messages", "list", productKey=product, kinds="up,online", limit=2)
    assert [posted(e) for e in newest.ok()] == [8, 7]
    assert newest.body["nextCursor"] == newest.ok()[0]["cursor"]


def test_one_devices_messages_page_by_the_same_cursor(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str]
) -> None:
    product = make_product()
    device, other = new_device(api, product), new_device(api, product)
    key = {"productKey": product, "deviceKey": device["deviceKey"]}
    with connect(gatehouse.mqtt_port, device) as client, connect(gatehouse.mqtt_port, other) as o:
        post(client, device, 1)
        post(o, other, 100)
        api("broker", "sync").ok()
        start = api("devices", "listMessages", kind="up", **key)
        assert [posted(e) for e in start.ok()] == [1]
        cursor = start.body["nextCursor"]
        post(client, device, 2)
        post(o, other, 101)
        post(client, device, 3)
        api("broker", "sync").ok()
        after = api("devices", "listMessages", kinds="up", since=cursor, **key)
        assert [posted(e) for e in after.ok()] == [2, 3]
        assert after.body["nextCursor"] == after.ok()[-1]["cursor"]
        again = api("devices", "listMessages", kinds="up", since=after.body["nextCursor"], **key)
        assert (again.ok(), again.body["nextCursor"]) == ([], after.body["nextCursor"])
        # Only this device's, through messages?action=list too.
        one = api("messages", "list", productKey=product, deviceKey=device["deviceKey"], kinds="up")
        assert [posted(e) for e in one.ok()] == [3, 2, 1]


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({"since": "-1"}, 400),
        ({"since": "abc"}, 400),
        ({"since": str(2**63)}, 400),
        ({"limit": "0"}, 400),
        ({"limit": "1001"}, 400),
        ({"kinds": "up,nonsense"}, 400),
    ],
)
def test_a_bad_cursor_query_is_refused(
    api: Api, make_product: Callable[..., str], query: dict[str, str], code: int
) -> None:
    reply = api("messages", "list", productKey=make_product(), **query)
    assert reply.status == code
    assert reply.code != 0 and reply.body["data"] is None


def test_another_organisations_product_is_not_found(
    api: Api, gatehouse: Gatehouse, make_product: Callable[..., str]
) -> None:
    product = make_product()
    tenant = api("organizations", "create", {"name": unique("tenant")}).ok()
    other = Api(gatehouse.url, tenant["accessKey"], tenant["accessSecret"], None)
    assert other("messages", "list", productKey=product).status == 404
    assert api("messages", "list").status == 400  # productKey is required
