"""EnOS devices over real MQTT (paho) against a real `gatehouse serve`: admission,
presence, the topic ACL, TSL routing with replies, and every bad input."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from broker.protocol import encode_request
from simulators.platform import with_mandatory
from tests.conftest import unique
from tests.devices import connect, eventually, lift_connect_limit, new_device, request, sync, topic
from tests.mqtt_client import Client
from tests.server import Api, Gatehouse

REFUSED = 0x80


@pytest.fixture
def product(make_product: Callable[..., str]) -> str:
    return make_product()


@pytest.fixture
def device(api: Api, product: str) -> dict[str, str]:
    return new_device(api, product)


def state(api: Api, device: dict[str, str]) -> str:
    data: dict[str, Any] = api(
        "devices", "get", productKey=device["productKey"], deviceKey=device["deviceKey"]
    ).ok()
    return str(data["state"])


def messages(api: Api, device: dict[str, str], kind: str = "") -> list[dict[str, Any]]:
    query = {"productKey": device["productKey"], "deviceKey": device["deviceKey"]}
    if kind:
        query["kind"] = kind
    entries: list[dict[str, Any]] = api("devices", "listMessages", **query).ok()
    return entries


# -- admission and presence ------------------------------------------------------------


def test_a_signed_device_gets_replies_without_subscribing(
    gatehouse: Gatehouse, api: Api, device: dict[str, str]
) -> None:
    with connect(gatehouse.mqtt_port, device) as client:
        assert client.accepted
        reply = request(
            client, device, "thing/measurepoint/post", {"measurepoints": {"temp": 21.5}}
        )
        assert reply["code"] == 200 and isinstance(reply["id"], str)
        eventually(lambda: state(api, device) == "online")
        stats = api("statistics", "get", productKey=device["productKey"]).ok()
        assert (stats["online"], stats["activated"]) == (1, 1)
    eventually(lambda: state(api, device) == "offline")
    kinds = [entry["kind"] for entry in eventually(lambda: messages(api, device, "online,offline"))]
    assert kinds[:2] == ["offline", "online"]  # newest first


@pytest.mark.parametrize("method", ["hmacsha1", "sha256", "hmacmd5"])
def test_other_sign_methods_and_second_timestamps_are_accepted(
    gatehouse: Gatehouse, device: dict[str, str], method: str
) -> None:
    seconds = str(int(time.time()))
    with connect(gatehouse.mqtt_port, device, sign_method=method, timestamp=seconds) as client:
        assert client.accepted


def refusal_of(api: Api, device: dict[str, str]) -> dict[str, Any]:
    entries = eventually(lambda: messages(api, device, "refused"))
    return entries[0]  # type: ignore[no-any-return]


def test_a_wrong_sign_is_refused_and_recorded(
    gatehouse: Gatehouse, api: Api, device: dict[str, str]
) -> None:
    with connect(gatehouse.mqtt_port, device, secret="not-the-secret") as client:
        assert client.connack == 5
    assert refusal_of(api, device)["code"] == 742
    assert state(api, device) == "inactive"


def test_an_unknown_device_is_refused(gatehouse: Gatehouse, product: str) -> None:
    ghost = {"productKey": product, "deviceKey": "ghost1", "deviceSecret": "whatever1"}
    with connect(gatehouse.mqtt_port, ghost) as client:
        assert client.connack == 5


def test_a_disabled_device_is_refused(
    gatehouse: Gatehouse, api: Api, device: dict[str, str]
) -> None:
    api("devices", "disable", productKey=device["productKey"], deviceKey=device["deviceKey"]).ok()
    with connect(gatehouse.mqtt_port, device) as client:
        assert client.connack == 5
    assert refusal_of(api, device)["code"] == 723


@pytest.mark.parametrize(
    ("settings", "code"),
    [({"deviceType": "subdevice"}, 771), ({"biDirectionalAuth": True}, 746)],
)
def test_product_rules_refuse_direct_plain_connections(
    gatehouse: Gatehouse,
    api: Api,
    make_product: Callable[..., str],
    settings: dict[str, Any],
    code: int,
) -> None:
    device = new_device(api, make_product(**settings))
    with connect(gatehouse.mqtt_port, device) as client:
        assert client.connack == 5
    assert refusal_of(api, device)["code"] == code


def test_the_activation_quota_refuses_the_next_new_device(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str]
) -> None:
    product = make_product(activationQuota=1)
    first, second = new_device(api, product), new_device(api, product)
    with connect(gatehouse.mqtt_port, first) as client:
        assert client.accepted
    with connect(gatehouse.mqtt_port, second) as late:
        assert late.connack == 5
    assert "quota" in refusal_of(api, second)["detail"]


def test_a_second_connect_takes_over_the_first(
    gatehouse: Gatehouse, api: Api, device: dict[str, str]
) -> None:
    with connect(gatehouse.mqtt_port, device) as first:
        lift_connect_limit(api, device)  # EnOS allows one CONNECT a second per device
        with connect(gatehouse.mqtt_port, device) as second:
            assert first.accepted and second.accepted
            assert first.disconnected.wait(5)
            post = {"measurepoints": {"temp": 1}}
            assert request(second, device, "thing/measurepoint/post", post)["code"] == 200


def test_disabling_an_online_device_disconnects_it(
    gatehouse: Gatehouse, api: Api, device: dict[str, str]
) -> None:
    with connect(gatehouse.mqtt_port, device) as client:
        assert client.accepted
        api(
            "devices", "disable", productKey=device["productKey"], deviceKey=device["deviceKey"]
        ).ok()
        assert client.disconnected.wait(5)


# -- the topic ACL ---------------------------------------------------------------------


def test_a_device_subscribes_only_to_its_own_topics(
    gatehouse: Gatehouse, api: Api, device: dict[str, str]
) -> None:
    other = new_device(api, device["productKey"])
    with connect(gatehouse.mqtt_port, device) as client:
        pk, dk = device["productKey"], device["deviceKey"]
        refused = [
            "#",
            "$SYS/#",
            "/sys/#",
            f"/sys/{pk}/#",
            f"/sys/{pk}/+/thing/service/#",
            f"/sys/+/{dk}/thing/service/#",
            topic(other, "thing/service/reboot"),
            f"/ext/session/{pk}/{other['deviceKey']}/#",
            "demo/anything",
        ]
        codes = client.subscribe_many([(f, 1) for f in refused])
        assert codes == [REFUSED] * len(refused)
        assert client.subscribe(topic(device, "thing/service/#"), 1) == 1
        assert client.subscribe(f"/ext/session/{pk}/{dk}/#", 0) == 0


def test_a_device_cannot_publish_into_another_devices_topics(
    gatehouse: Gatehouse, api: Api, device: dict[str, str]
) -> None:
    victim = new_device(api, device["productKey"])
    with (
        connect(gatehouse.mqtt_port, device) as attacker,
        connect(gatehouse.mqtt_port, victim) as target,
    ):
        attacker.publish(topic(victim, "thing/service/reboot"), b'{"id":"1","params":{}}', qos=1)
        attacker.publish(topic(victim, "thing/model/down_raw"), b"\x01", qos=1)
        # The victim's own request and reply is the barrier: nothing came before it.
        reply = request(target, victim, "thing/measurepoint/post", {"measurepoints": {"temp": 2}})
        assert reply["code"] == 200
        assert target.received.empty()
        # The attacker's connection is still up: refused PUBLISHes are dropped by default.
        reply = request(attacker, device, "thing/measurepoint/post", {"measurepoints": {"temp": 3}})
        assert reply["code"] == 200


def test_an_application_reads_its_organisations_devices(
    gatehouse: Gatehouse, api: Api, device: dict[str, str]
) -> None:
    pk = device["productKey"]
    with (
        Client(
            gatehouse.mqtt_port, unique("dash"), gatehouse.access_key, gatehouse.access_secret
        ) as app,
        connect(gatehouse.mqtt_port, device) as client,
    ):
        assert app.accepted
        assert app.subscribe(f"/sys/{pk}/+/thing/measurepoint/post", 1) == 1
        # Wide filters are granted; deliveries are checked against the organisation
        # (tests/test_broker_guards.py shows another organisation's traffic stays out).
        assert app.subscribe_many([("#", 0), ("/sys/+/+/thing/measurepoint/post", 0)]) == [0, 0]
        # Read-only: its PUBLISH to a device's downlink never reaches the device.
        app.publish(topic(device, "thing/service/reboot"), b"{}", qos=1)
        post = {"measurepoints": {"temp": 30.5}}
        assert request(client, device, "thing/measurepoint/post", post)["code"] == 200
        assert client.received.empty()
        seen = app.next_received(topic(device, "thing/measurepoint/post"))
        assert orjson.loads(seen.payload)["params"] == post


def test_an_application_cannot_read_another_organisations_devices(
    gatehouse: Gatehouse, api: Api, product: str
) -> None:
    tenant = api("organizations", "create", {"name": unique("tenant")}).ok()
    with Client(
        gatehouse.mqtt_port, unique("spy"), tenant["accessKey"], tenant["accessSecret"]
    ) as app:
        assert app.accepted
        assert app.subscribe(f"/sys/{product}/#") == REFUSED
    with Client(gatehouse.mqtt_port, unique("spy"), tenant["accessKey"], "wrong-secret") as wrong:
        assert wrong.connack == 5


# -- routing: replies and faults -------------------------------------------------------


@pytest.fixture
def online(gatehouse: Gatehouse, device: dict[str, str]) -> Any:
    client = connect(gatehouse.mqtt_port, device)
    assert client.accepted
    yield client
    client.close()


def test_measurepoints_become_latest_values_and_messages(
    api: Api, device: dict[str, str], online: Client
) -> None:
    first = {"measurepoints": {"temp": 20.0, "mode": 1}, "time": 1_700_000_000_000}
    assert request(online, device, "thing/measurepoint/post", first)["code"] == 200
    second = {"measurepoints": {"temp": 22.5}, "time": 1_700_000_001_000}
    assert request(online, device, "thing/measurepoint/post", second, qos=0)["code"] == 200
    # Older history resumed afterwards does not replace the latest value.
    old = {"measurepoints": {"temp": 1.0}, "time": 1_600_000_000_000}
    assert request(online, device, "thing/measurepoint/resume", old)["code"] == 200
    query = {"productKey": device["productKey"], "deviceKey": device["deviceKey"]}

    def latest() -> Any:
        values = api("devices", "getLatest", **query).ok()
        return values if values.get("temp", {}).get("value") == 22.5 else None

    values = eventually(latest)
    assert values["temp"] == {"value": 22.5, "time": 1_700_000_001_000}
    assert values["mode"] == {"value": 1, "time": 1_700_000_000_000}
    ups = eventually(lambda: len(messages(api, device, "up")) >= 3 and messages(api, device, "up"))
    assert [entry["code"] for entry in ups[:3]] == [200, 200, 200]
    assert ups[0]["topic"].endswith("thing/measurepoint/resume")


@pytest.mark.parametrize(
    ("params", "code", "fault"),
    [
        ({"measurepoints": {"temp": 500}}, 460, "temp: 500 is above max 120"),
        ({"measurepoints": {"temp": "hot"}}, 460, "temp"),
        ({"measurepoints": {"nonsense": 1}}, 460, "nonsense: not defined in the thing model"),
        ({"measurepoints": {}}, 1220, "measurepoints"),
        ({"measurepoints": {"temp": 1}, "time": "now"}, 1220, "params.time"),
        ([1, 2], 1220, "params must be a JSON object"),
    ],
)
def test_params_that_break_the_thing_model_get_a_coded_reply(
    api: Api, device: dict[str, str], online: Client, params: Any, code: int, fault: str
) -> None:
    reply = request(online, device, "thing/measurepoint/post", params)
    assert reply["code"] == code
    assert fault in reply["message"]
    query = {"productKey": device["productKey"], "deviceKey": device["deviceKey"]}
    sync(api)  # whatever the fault wrote is stored: none of it is a latest value
    assert api("devices", "getLatest", **query).ok() == {}


@pytest.mark.parametrize(
    ("payload", "code", "fault"),
    [
        (b'{"id": "7", "params": {', 6207, "not JSON"),
        (b"\xff\xfe", 6207, "not JSON"),
        (b'{"id": "7", "method": 5}', 1220, "method must be a string"),
    ],
)
def test_malformed_payloads_get_a_coded_reply(
    device: dict[str, str], online: Client, payload: bytes, code: int, fault: str
) -> None:
    full = topic(device, "thing/measurepoint/post")
    online.publish(full, payload, qos=1)
    reply = orjson.loads(online.next_received(full + "_reply").payload)
    assert reply["code"] == code and fault in reply["message"]
    if b'"7"' in payload and code == 1220:
        assert reply["id"] == "7"


def test_events_are_checked_against_the_model(device: dict[str, str], online: Client) -> None:
    good = {"events": {"temp": 99.5}, "time": 1_700_000_000_000}
    assert request(online, device, "thing/event/overheat/post", good, qos=0)["code"] == 200
    unknown = request(online, device, "thing/event/meltdown/post", {"events": {}})
    assert unknown["code"] == 460 and "meltdown" in unknown["message"]
    wrong = request(online, device, "thing/event/overheat/post", {"events": {"temp": "x"}})
    assert wrong["code"] == 460


def test_batch_posts_honour_skip_invalid_measurepoints(
    api: Api, device: dict[str, str], online: Client
) -> None:
    entries = [
        {"measurepoints": {"temp": 10.0}, "time": 1_700_000_000_000},
        {"measurepoints": {"temp": 11.0, "target": 99}, "time": 1_700_000_001_000},
    ]
    strict = request(online, device, "thing/measurepoint/post/batch", entries)
    assert strict["code"] == 460 and "params[1]" in strict["message"]
    lenient = request(
        online,
        device,
        "thing/measurepoint/post/batch",
        entries,
        extra={"skipInvalidMeasurepoints": True, "allowOfflineSubDevice": False},
    )
    assert lenient["code"] == 200 and "target" in lenient["message"]
    query = {"productKey": device["productKey"], "deviceKey": device["deviceKey"]}
    values = eventually(lambda: api("devices", "getLatest", **query).ok())
    assert values["temp"]["value"] == 11.0 and "target" not in values


def test_a_batch_entry_for_another_device_is_refused(
    api: Api, device: dict[str, str], online: Client
) -> None:
    other = new_device(api, device["productKey"])
    entries = [
        {
            "productKey": other["productKey"],
            "deviceKey": other["deviceKey"],
            "measurepoints": {"temp": 1.0},
        }
    ]
    assert request(online, device, "thing/measurepoint/post/batch", entries)["code"] == 740


def test_attributes_update_query_and_delete(
    api: Api, device: dict[str, str], online: Client
) -> None:
    update = {"attributes": {"site": "north", "floor": 3}}
    assert request(online, device, "thing/attribute/update", update)["code"] == 200
    query = request(online, device, "thing/attribute/query", {"attributes": ["site"]})
    assert query["data"] == {"attributes": {"site": "north"}}
    assert (
        request(online, device, "thing/attribute/delete", {"attributes": ["site"]})["code"] == 200
    )
    everything = request(online, device, "thing/attribute/query", {"attributes": []})
    assert everything["data"] == {"attributes": {"floor": 3}}
    bad = request(online, device, "thing/attribute/update", {"attributes": ["site"]})
    assert bad["code"] == 1220
    record = api("devices", "get", productKey=device["productKey"], deviceKey=device["deviceKey"])
    assert record.ok()["deviceAttributes"] == {"floor": 3}


# -- Custom data format ----------------------------------------------------------------


def raw_reply(client: Client, device: dict[str, str], payload: bytes) -> bytes:
    full = topic(device, "thing/model/up_raw")
    client.publish(full, payload, qos=1)
    return client.next_received(full + "_reply").payload


def test_raw_up_on_a_json_product_is_refused(device: dict[str, str], online: Client) -> None:
    reply = orjson.loads(raw_reply(online, device, b"\x01\x02"))
    assert reply["code"] == 1220 and "Custom" in reply["message"]


def test_raw_bytes_of_a_codecless_custom_product_pass_through(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str]
) -> None:
    device = new_device(api, make_product(dataFormat="Custom"))
    with (
        Client(
            gatehouse.mqtt_port, unique("raw"), gatehouse.access_key, gatehouse.access_secret
        ) as app,
        connect(gatehouse.mqtt_port, device) as client,
    ):
        assert app.subscribe(topic(device, "thing/model/up_raw"), 1) == 1
        assert orjson.loads(raw_reply(client, device, b"\x00\xffraw"))["code"] == 200
        assert app.next_received(topic(device, "thing/model/up_raw")).payload == b"\x00\xffraw"


def test_a_codec_decodes_raw_bytes_into_checked_requests(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str]
) -> None:
    device = new_device(api, make_product(dataFormat="Custom", codec="json"))
    with connect(gatehouse.mqtt_port, device) as client:
        good = encode_request("5", "thing.measurepoint.post", {"measurepoints": {"temp": 3.5}})
        assert orjson.loads(raw_reply(client, device, good)) == {
            "id": "5",
            "code": 200,
            "data": "",
            "message": "",
        }
        bad = encode_request("6", "thing.measurepoint.post", {"measurepoints": {"temp": 900}})
        assert orjson.loads(raw_reply(client, device, bad))["code"] == 460
        nomethod = orjson.loads(raw_reply(client, device, b'{"id": "8", "method": "x.y"}'))
        assert nomethod["code"] == 6450
        garbage = orjson.loads(raw_reply(client, device, b"\x01\x02"))
        assert garbage["code"] == 1220 and "cannot decode" in garbage["message"]


def test_a_codec_needs_a_custom_product(api: Api, model_id: str) -> None:
    body = {"productName": unique("p"), "modelId": model_id, "codec": "json"}
    reply = api("products", "create", with_mandatory(body))
    assert reply.status == 400 and "codec applies only" in reply.msg


def test_a_device_retrying_a_refused_connect_does_not_flood_the_log(
    gatehouse: Gatehouse, api: Api, device: dict[str, str]
) -> None:
    for _ in range(10):
        client = connect(gatehouse.mqtt_port, device, secret="not-the-secret")
        client.close()
        assert client.connack == 5
    entries = eventually(
        lambda: len(messages(api, device, "refused")) >= 2 and messages(api, device, "refused")
    )
    assert {entry["code"] for entry in entries} == {742, 429}  # the sign, then the limit
    # Each refusal is logged (or not) before its CONNACK, and every CONNACK is in.
    lines = [line for line in gatehouse.log().splitlines() if device["deviceKey"] in line]
    assert len(lines) == 2, lines


def test_a_deleted_device_leaves_nothing_for_its_successor(
    api: Api, device: dict[str, str], online: Client
) -> None:
    assert (
        request(online, device, "thing/measurepoint/post", {"measurepoints": {"temp": 5}})["code"]
        == 200
    )
    query = {"productKey": device["productKey"], "deviceKey": device["deviceKey"]}
    api("devices", "delete", **query).ok()
    assert online.disconnected.wait(5)
    again = new_device(api, device["productKey"], deviceKey=device["deviceKey"])
    assert again["deviceKey"] == device["deviceKey"]
    sync(api)  # whatever was buffered for the old device would have landed by now
    assert api("devices", "getLatest", **query).ok() == {}
    assert messages(api, device) == []


def test_refused_publishes_are_counted_in_the_broker_statistics(
    gatehouse: Gatehouse, api: Api, device: dict[str, str]
) -> None:
    before = api("broker", "stats").ok()
    other = new_device(api, device["productKey"])
    with connect(gatehouse.mqtt_port, device) as client:
        client.publish(topic(other, "thing/service/reboot"), b"{}", qos=1)
        post = {"measurepoints": {"temp": 4}}
        assert request(client, device, "thing/measurepoint/post", post)["code"] == 200
        after = api("broker", "stats").ok()
    assert after["mqtt"]["refused_publish"] >= before["mqtt"]["refused_publish"] + 1
    assert after["mqtt"]["routed"] >= before["mqtt"]["routed"] + 1
    assert after["devices"]["admitted"] >= before["devices"]["admitted"] + 1
    assert set(after["writer"]) >= {"flushes", "rows", "dropped_log", "failures"}


def test_only_the_admin_organisation_reads_broker_statistics(
    gatehouse: Gatehouse, api: Api
) -> None:
    tenant = api("organizations", "create", {"name": unique("tenant")}).ok()
    other = Api(gatehouse.url, tenant["accessKey"], tenant["accessSecret"], None)
    reply = other("broker", "stats")
    assert reply.status == 403 and "admin" in reply.msg


def test_what_a_device_sent_before_leaving_is_handled(
    gatehouse: Gatehouse, api: Api, device: dict[str, str]
) -> None:
    """A QoS 1 PUBLISH is acknowledged once queued; the broker handles it even when the
    device disconnects right after (it used to be dropped with the connection)."""
    update = topic(device, "thing/attribute/update")
    with connect(gatehouse.mqtt_port, device) as client:
        sent = [
            client.paho.publish(
                update, orjson.dumps({"id": str(n), "params": {"attributes": {f"a{n}": n}}}), 1
            )
            for n in range(20)
        ]
        for info in sent:
            info.wait_for_publish(5)  # every PUBACK is in, so every update is stored
    query = {"productKey": device["productKey"], "deviceKey": device["deviceKey"]}
    attributes = api("devices", "get", **query).ok()["deviceAttributes"]
    assert attributes == {f"a{n}": n for n in range(20)}
