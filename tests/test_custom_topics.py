"""Custom topics (issue 17): a device's `/{pk}/{dk}/user/...`, its bytes parsed by the
product's Alibaba-style `transformPayload` when it tags the topic `?_sn=default`, the
ACL around that namespace, and the raw reply that says "not stored" going through the
product's script, against a real `gatehouse serve` and real MQTT clients."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import struct
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from broker.gate.access import may_publish, may_receive, may_subscribe
from broker.gate.identity import AnonymousIdentity, AppIdentity, DeviceIdentity, Identity
from simulators.device import DeviceCredentials, SimDevice
from simulators.platform import with_mandatory
from tests.conftest import THERMOSTAT_TSL, unique
from tests.devices import ask, connect, eventually, ext_topic, new_device, signed_sub, topic
from tests.mqtt_client import Client
from tests.server import Api, Gatehouse
from tests.test_custom_format import (
    MODEL,
    PLATFORM_JS,
    REPORT_REPLY,
    TIME_LIMIT_S,
    post_raw,
    reply_frame,
    report,
)
from tests.test_durability import _fill, small_disk  # noqa: F401  # the full-disk fixture
from tests.test_linkkit import linkkit_python  # noqa: F401  # the session's linkkit venv

TAG = "?_sn=default"
REFUSED = 0x80
# The example's script and a transformPayload for its custom topics: `loop` never ends,
# `shape` answers an array, `big` a string of as many x as bytes came; anything else is
# a frame of temperature:int16 (0.1 C) and humidity:uint8. It echoes the topic it was
# given, to show that the tag is not in it.
TRANSFORM_JS = (
    PLATFORM_JS
    + """
function transformPayload(topic, bytes) {
    var name = topic.substring(topic.lastIndexOf('/') + 1);
    if (name === 'loop') { while (true) {} }
    if (name === 'shape') { return [1, 2, 3]; }
    if (name === 'big') { return {topic: topic, pad: new Array(bytes.length + 1).join('x')}; }
    var view = unsigned(bytes);
    return {topic: topic, temperature: view.getInt16(0) / 10, humidity: view.getUint8(2)};
}
"""
)


def make_th_product(api: Api, script: str | None = TRANSFORM_JS, **settings: Any) -> str:
    """A Custom product on the th_frame example's model, with `script` uploaded if given."""
    model = unique("thframe")
    api("thing-models", "create", {"modelId": model, "tsl": MODEL}).ok()
    body = {"productName": unique("th"), "modelId": model, "dataFormat": "Custom", **settings}
    product_key: str = api("products", "create", with_mandatory(body)).data
    if script is not None:
        upload = {"scriptType": "JavaScript", "scriptContent": script}
        api("product-scripts", "upload", upload, productKey=product_key).ok()
    return product_key


@pytest.fixture
def th_product(api: Api) -> Callable[..., str]:
    return lambda *args, **settings: make_th_product(api, *args, **settings)


def frame(temperature: float, humidity: int) -> bytes:
    return struct.pack(">hB", round(temperature * 10), humidity)


def custom(device: dict[str, str], name: str) -> str:
    return f"/{device['productKey']}/{device['deviceKey']}/user/{name}"


def app_client(server: Gatehouse, key: str | None = None, secret: str | None = None) -> Client:
    """An application's MQTT connection with an organisation's access key."""
    client = Client(
        server.mqtt_port, unique("app"), key or server.access_key, secret or server.access_secret
    )
    assert client.accepted
    return client


def log_entries(api: Api, device: dict[str, str], wanted_topic: str) -> list[dict[str, Any]]:
    query = {"productKey": device["productKey"], "deviceKey": device["deviceKey"]}
    entries: list[dict[str, Any]] = api("devices", "listMessages", **query).ok()
    return [e for e in entries if e.get("topic") == wanted_topic]


def quiet(*clients: Client) -> bool:
    """Nothing more arrived: a round trip with each first, so that whatever the broker
    sent before now has been read."""
    for client in clients:
        client.barrier()
    return all(client.received.empty() for client in clients)


# -- up: tagged bytes become the script's JSON for every subscriber ------------------------


def test_tagged_bytes_reach_subscribers_as_the_scripts_json_on_the_untagged_topic(
    gatehouse: Gatehouse, api: Api, th_product: Callable[..., str]
) -> None:
    device = new_device(api, th_product(TRANSFORM_JS))
    update = custom(device, "update")
    with app_client(gatehouse) as app, connect(gatehouse.mqtt_port, device) as client:
        assert app.subscribe(f"/{device['productKey']}/+/user/#", 1) == 1
        assert client.subscribe(update, 1) == 1  # the device on its own custom topic
        client.publish(update + TAG, frame(-4.5, 61), qos=1)  # returns on the PUBACK
        expected = {"topic": update, "temperature": -4.5, "humidity": 61}
        for subscriber in (app, client):
            seen = subscriber.next_received(update)
            assert orjson.loads(seen.payload) == expected
        # Nothing else: no reply to the device, nothing on the tagged topic.
        assert quiet(app, client)
    logged = eventually(lambda: log_entries(api, device, update))
    assert logged[0]["code"] == 200 and orjson.loads(logged[0]["payload"]) == expected


def test_untagged_bytes_pass_through_as_they_are_and_are_never_retained(
    gatehouse: Gatehouse, api: Api, th_product: Callable[..., str]
) -> None:
    device = new_device(api, th_product(TRANSFORM_JS))
    raw = custom(device, "raw")
    with app_client(gatehouse) as app, connect(gatehouse.mqtt_port, device) as client:
        assert app.subscribe(raw, 1) == 1
        client.publish(raw, b"\x00\xff not json", qos=1, retain=True)
        assert app.next_received(raw).payload == b"\x00\xff not json"
        with app_client(gatehouse) as late:
            assert late.subscribe(raw, 1) == 1
            assert quiet(late)  # a device's custom topic keeps no retained message
    logged = eventually(lambda: log_entries(api, device, raw))
    assert logged[0]["payloadHex"] == b"\x00\xff not json".hex() and "code" not in logged[0]


# -- faults: nothing delivered, the code in the message log and one broker log line --------


@pytest.mark.parametrize(
    ("kind", "name", "code"),
    [
        ("no transformPayload", "update", 26006),
        ("wrong shape", "shape", 26007),
        ("no script", "update", 26001),
        ("codec without transform", "update", 26006),
    ],
)
def test_a_parse_that_fails_delivers_nothing_and_logs_its_code(
    gatehouse: Gatehouse,
    api: Api,
    th_product: Callable[..., str],
    kind: str,
    name: str,
    code: int,
) -> None:
    product = {
        "no transformPayload": lambda: th_product(PLATFORM_JS),
        "wrong shape": lambda: th_product(TRANSFORM_JS),
        "no script": lambda: th_product(None),
        "codec without transform": lambda: th_product(None, codec="json"),  # json has none
    }[kind]()
    device = new_device(api, product)
    wanted = custom(device, name)
    payload = b"\x5a\xa5\x3c"
    with app_client(gatehouse) as app, connect(gatehouse.mqtt_port, device) as client:
        assert app.subscribe(f"/{product}/+/user/#", 1) == 1
        client.publish(wanted + TAG, payload, qos=1)  # PUBACKed: the message log has it
        assert quiet(app, client)
    logged = eventually(lambda: log_entries(api, device, wanted + TAG))
    assert logged[0]["code"] == code and logged[0]["detail"], logged
    line = f"{product}/{device['deviceKey']}: {wanted} not parsed and not delivered: code {code}"
    eventually(lambda: line in gatehouse.log())
    assert payload.hex() not in gatehouse.log()


# A product whose transform loops, on more devices than there are script workers (one
# device's frames are parsed in turn), each with frames enough to keep the product's
# calls queued while the test looks.
RUNAWAYS, FRAMES_EACH = 8, 3
SCRIPT_WORKERS = 2  # broker.gate.payload_scripts.DEFAULT_WORKERS, the session's serve


def test_a_looping_transform_is_cut_off_and_other_devices_keep_being_served(
    gatehouse: Gatehouse, api: Api, th_product: Callable[..., str]
) -> None:
    product = th_product(TRANSFORM_JS)
    runaways = [new_device(api, product) for _ in range(RUNAWAYS)]
    good = new_device(api, th_product(TRANSFORM_JS))  # another product: another lane
    update = custom(good, "update")
    with (
        contextlib.ExitStack() as stack,
        app_client(gatehouse) as app,
        connect(gatehouse.mqtt_port, good) as well,
    ):
        assert app.subscribe_many([(f"/{product}/#", 1), (update, 1)]) == [1, 1]
        sent = []  # per device, its frames' publish infos (each PUBACKed once cut off)
        for device in runaways:
            looping = stack.enter_context(connect(gatehouse.mqtt_port, device))
            frames = [custom(device, "loop") + TAG] * FRAMES_EACH
            sent.append([looping.paho.publish(name, b"\x00", qos=1) for name in frames])

        def answered() -> int:
            return sum(info.is_published() for infos in sent for info in infos)

        # Each device's first loop was cut off: its next ones are in the product's calls.
        eventually(lambda: all(infos[0].is_published() for infos in sent), timeout=10)
        before = answered()
        well.publish(update + TAG, frame(20.5, 40), qos=1)
        assert orjson.loads(app.next_received(update).payload)["temperature"] == 20.5
        meanwhile = answered() - before
        # The runaways' lane is all workers but one, and the good frame took the one left
        # at once. Had it queued behind their calls (no lanes, or one worker), it waited for
        # its worker's share of the RUNAWAYS loops, one time limit each, while the other
        # workers ended as many: RUNAWAYS - SCRIPT_WORKERS or more ended meanwhile.
        limit = RUNAWAYS // SCRIPT_WORKERS - 1
        assert meanwhile <= limit, f"{meanwhile} loops of {TIME_LIMIT_S} s ended meanwhile"
        for infos in sent:
            for info in infos:
                info.wait_for_publish(RUNAWAYS * FRAMES_EACH * TIME_LIMIT_S + 5)
        assert quiet(app)  # nothing of the runaways' was delivered

    def loops_logged(device: dict[str, str]) -> list[dict[str, Any]] | None:
        entries = log_entries(api, device, custom(device, "loop") + TAG)
        return entries if len(entries) == FRAMES_EACH else None

    for device in runaways:
        entries = eventually(functools.partial(loops_logged, device))
        assert {e["code"] for e in entries} == {26002}
        assert all("time limit" in e["detail"] for e in entries)


def test_a_python_codec_may_offer_transform(open_gatehouse: Gatehouse) -> None:
    api = open_gatehouse.client()
    model = unique("model")
    api("thing-models", "create", {"modelId": model, "tsl": THERMOSTAT_TSL}).ok()
    body = {"productName": unique("hex"), "modelId": model, "dataFormat": "Custom"}
    product = api("products", "create", with_mandatory({**body, "codec": "hex"})).data
    device = new_device(api, product)
    update = custom(device, "update")
    with app_client(open_gatehouse) as app, connect(open_gatehouse.mqtt_port, device) as client:
        assert app.subscribe(update, 1) == 1
        client.publish(update + TAG, b"\x01\x02", qos=1)
        assert orjson.loads(app.next_received(update).payload) == {"topic": update, "hex": "0102"}


# -- the ACL: the device's own namespace ---------------------------------------------------

OWNERS = {"pkA": "org1", "pkB": "org2"}
DEVICE = DeviceIdentity("pkA", "dkA", "org1")
APP = AppIdentity("org1", "dashboard")
ANONYMOUS = AnonymousIdentity("someone")


@pytest.mark.parametrize(
    ("identity", "action", "topic_or_filter", "allowed"),
    [
        (DEVICE, "publish", "/pkA/dkA/user/update?_sn=default", True),
        (DEVICE, "subscribe", "/pkA/dkA/user/#", True),
        (DEVICE, "subscribe", "/pkA/+/user/#", False),
        (DEVICE, "publish", "/pkA/dkB/user/update", False),
        (APP, "publish", "/pkA/dkA/user/update", False),
        (APP, "subscribe", "/+/+/user/#", True),
        (APP, "subscribe", "/pkA/+/user/#", True),
        (APP, "subscribe", "/pkB/#", False),
        (APP, "subscribe", "/nosuch/#", False),
        (APP, "receive", "/pkA/dkA/user/update", True),
        (APP, "receive", "/pkB/dkB/user/update", False),
        (APP, "receive", "/nosuch/d/user/x", False),
        (ANONYMOUS, "publish", "/pkA/dkA/user/update", False),
        (ANONYMOUS, "publish", "/pkA/not-yet-a-device/user/x", False),
        (ANONYMOUS, "publish", "/nosuch/d/user/x", True),
        (ANONYMOUS, "subscribe", "/+/+/user/#", True),  # filtered on each delivery
        (ANONYMOUS, "subscribe", "/pkA/#", True),
        (ANONYMOUS, "subscribe", "/pkA/+/user/#", False),
        (ANONYMOUS, "receive", "/pkA/dkA/user/update", False),
        (ANONYMOUS, "receive", "/nosuch/d/user/x", True),
    ],
)
def test_the_acl_of_custom_topics(
    identity: Identity, action: str, topic_or_filter: str, allowed: bool
) -> None:
    owner = OWNERS.get
    decision = {
        "publish": lambda: may_publish(identity, topic_or_filter, owner=owner),
        "subscribe": lambda: may_subscribe(identity, topic_or_filter, owner),
        "receive": lambda: may_receive(identity, topic_or_filter, owner),
    }[action]()
    assert decision is allowed


def test_only_the_device_uses_its_custom_topics_and_apps_read_their_own_orgs(
    gatehouse: Gatehouse, api: Api, th_product: Callable[..., str]
) -> None:
    product = th_product(TRANSFORM_JS)
    device, other = new_device(api, product), new_device(api, product)
    update = custom(device, "update")
    tenant = api("organizations", "create", {"name": unique("tenant")}).ok()
    with (
        app_client(gatehouse) as app,
        app_client(gatehouse, tenant["accessKey"], tenant["accessSecret"]) as spy,
        connect(gatehouse.mqtt_port, device) as client,
        connect(gatehouse.mqtt_port, other) as intruder,
    ):
        assert app.subscribe(update, 1) == 1
        assert client.subscribe(custom(device, "#"), 1) == 1
        # Another device of the same product may neither read nor write here.
        for topic_filter in (custom(device, "#"), f"/{product}/+/user/#", update):
            assert intruder.subscribe(topic_filter) == REFUSED
        intruder.publish(update + TAG, frame(1.0, 1), qos=1)
        intruder.publish(update, b"forged", qos=1)
        # Another organisation's application: refused by name, and a wide filter
        # gets it nothing of this organisation's devices.
        assert spy.subscribe(f"/{product}/#") == REFUSED
        assert spy.subscribe("/+/+/user/#") == 0
        # An application reads but never writes.
        app.publish(update, b"from the app", qos=1)
        client.publish(update + TAG, frame(2.0, 2), qos=1)
        assert orjson.loads(app.next_received(update).payload)["temperature"] == 2.0
        assert orjson.loads(client.next_received(update).payload)["temperature"] == 2.0
        assert quiet(app, client, spy)


def test_a_gateway_parses_for_its_logged_in_sub_devices(
    gatehouse: Gatehouse,
    api: Api,
    th_product: Callable[..., str],
    make_product: Callable[..., str],
) -> None:
    gateway = new_device(api, make_product(deviceType="gateway"))
    sub = new_device(api, th_product(TRANSFORM_JS, deviceType="subdevice"))
    update = custom(sub, "update")
    with app_client(gatehouse) as app, connect(gatehouse.mqtt_port, gateway) as client:
        assert app.subscribe(update, 1) == 1
        # Not logged in through it yet: refused.
        assert client.subscribe(custom(sub, "#")) == REFUSED
        topo = [signed_sub(sub)]
        assert ask(client, topic(gateway, "thing/topo/add"), topo)["code"] == 200
        assert ask(client, ext_topic(gateway, "combine/login"), signed_sub(sub))["code"] == 200
        assert client.subscribe(custom(sub, "#"), 1) == 1
        client.publish(update + TAG, frame(3.5, 30), qos=1)
        assert orjson.loads(app.next_received(update).payload)["humidity"] == 30
    assert eventually(lambda: log_entries(api, sub, update))[0]["code"] == 200


def test_a_gateway_receives_nothing_of_a_sub_device_that_moved_to_another_gateway(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str]
) -> None:
    """Its subscriptions for the sub-device stay, but each delivery is checked: the
    sub-device's custom topics and an explicit `/sys/{sub}/...` filter get it nothing."""
    gateway_product = make_product(deviceType="gateway")
    first, second = new_device(api, gateway_product), new_device(api, gateway_product)
    sub = new_device(api, make_product(deviceType="subdevice"))
    update = custom(sub, "update")
    with (
        connect(gatehouse.mqtt_port, first) as old,
        connect(gatehouse.mqtt_port, second) as new,
    ):
        assert ask(old, topic(first, "thing/topo/add"), [signed_sub(sub)])["code"] == 200
        assert ask(old, ext_topic(first, "combine/login"), signed_sub(sub))["code"] == 200
        assert old.subscribe_many([(custom(sub, "#"), 1), (topic(sub, "#"), 1)]) == [1, 1]
        # It moves: logged out of the first (which is told), logged in through the second.
        assert ask(new, topic(second, "thing/topo/add"), [signed_sub(sub)])["code"] == 200
        old.next_received(ext_topic(first, "combine/delete"))
        assert ask(new, ext_topic(second, "combine/login"), signed_sub(sub))["code"] == 200
        assert new.subscribe_many([(custom(sub, "#"), 1), (topic(sub, "#"), 1)]) == [1, 1]
        new.publish(update, b"for the second only", qos=1)
        assert new.next_received(update).payload == b"for the second only"
        post = {"measurepoints": {"temp": 21.0}}
        assert ask(new, topic(sub, "thing/measurepoint/post"), post)["code"] == 200
        assert quiet(old)


OPEN_MAX_PAYLOAD = 4096


@pytest.fixture(scope="module")
def open_gatehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gatehouse]:
    """Anonymous clients allowed, a codec with `transform`, and a small payload limit."""
    server = Gatehouse(
        tmp_path_factory.mktemp("custom") / "data",
        extra_args=(
            "--allow-anonymous",
            "--codec",
            "hex=tests.custom_topic_codec:HexCodec",
            "--max-payload",
            str(OPEN_MAX_PAYLOAD),
        ),
    ).start()
    yield server
    server.stop()


def test_anonymous_clients_never_see_or_write_a_devices_custom_topics(
    open_gatehouse: Gatehouse,
) -> None:
    api = open_gatehouse.client()
    model = unique("model")
    api("thing-models", "create", {"modelId": model, "tsl": THERMOSTAT_TSL}).ok()
    body = {"productName": unique("plain"), "modelId": model}
    product = api("products", "create", with_mandatory(body)).data
    device = new_device(api, product)
    update = custom(device, "update")
    with (
        Client(open_gatehouse.mqtt_port, unique("anon")) as snoop,
        Client(open_gatehouse.mqtt_port, unique("anon")) as forger,
        app_client(open_gatehouse) as app,
        connect(open_gatehouse.mqtt_port, device) as client,
    ):
        assert snoop.accepted and forger.accepted
        # Only a product's custom namespace: refused; wide filters: granted, filtered.
        assert snoop.subscribe(f"/{product}/+/user/#") == REFUSED
        assert snoop.subscribe(f"/{product}/{device['deviceKey']}/user/update") == REFUSED
        assert snoop.subscribe_many([("/+/+/user/#", 0), ("#", 0)]) == [0, 0]
        assert client.subscribe(update, 1) == 1
        assert app.subscribe(update, 1) == 1
        forger.publish(update, b"forged", qos=1)
        forger.publish(f"/{product}/not-yet-a-device/user/x", b"squat", qos=1, retain=True)
        client.publish(update, b"device bytes", qos=1)
        assert app.next_received(update).payload == b"device bytes"
        assert client.next_received(update).payload == b"device bytes"
        assert quiet(snoop, client, app)
        # Outside a product's namespace the same shape is an ordinary topic.
        forger.publish("/no-such-product/x/user/y", b"ordinary", qos=1)
        assert snoop.next_received("/no-such-product/x/user/y").payload == b"ordinary"


# -- Alibaba's SDK and the simulator --------------------------------------------------------

LINKKIT_CUSTOM_DRIVER = Path(__file__).parent / "linkkit" / "custom_driver.py"


def test_linkkit_publishes_on_a_tagged_custom_topic_and_reads_the_json(
    request: pytest.FixtureRequest,
    gatehouse: Gatehouse,
    api: Api,
    th_product: Callable[..., str],
) -> None:
    venv_python: Path = request.getfixturevalue("linkkit_python")
    device = new_device(api, th_product(TRANSFORM_JS))
    update = custom(device, "update")
    run = subprocess.run(
        [
            str(venv_python),
            str(LINKKIT_CUSTOM_DRIVER),
            "127.0.0.1",
            str(gatehouse.mqtt_port),
            device["productKey"],
            device["deviceKey"],
            device["deviceSecret"],
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    seen = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert seen and seen[-1]["event"] == "done", run.stderr[-2000:]
    assert [e["granted"] for e in seen if e["event"] == "subscribed"] == [[1]]
    messages = [e for e in seen if e["event"] == "message"]
    assert [m["topic"] for m in messages] == [update]
    expected = {"topic": update, "temperature": 18.5, "humidity": 48}
    assert json.loads(messages[0]["payload"]) == expected
    assert eventually(lambda: log_entries(api, device, update))[0]["code"] == 200


async def test_the_simulator_publishes_on_custom_topics(
    gatehouse: Gatehouse, api: Api, th_product: Callable[..., str]
) -> None:
    device = new_device(api, th_product(TRANSFORM_JS))
    update = custom(device, "update")
    with app_client(gatehouse) as app:
        assert app.subscribe(custom(device, "#"), 1) == 1
        sim = SimDevice(
            DeviceCredentials(device["productKey"], device["deviceKey"], device["deviceSecret"]),
            port=gatehouse.mqtt_port,
        )
        await sim.connect()
        try:
            assert sim.publish_custom("update", frame(12.5, 70)) == update
            assert sim.publish_custom("raw", b"as is", parse=False) == custom(device, "raw")
            # Read off the loop's thread: the simulator's client runs on this loop.
            parsed = await asyncio.to_thread(app.next_received, update)
            raw = await asyncio.to_thread(app.next_received, custom(device, "raw"))
        finally:
            await sim.close()
        expected = {"topic": update, "temperature": 12.5, "humidity": 70}
        assert orjson.loads(parsed.payload) == expected
        assert raw.payload == b"as is"


# -- the raw reply that says "not stored" goes through the script ---------------------------


def test_a_raw_posts_not_stored_reply_is_encoded_by_the_script(
    new_gatehouse: Callable[..., Gatehouse],
    small_disk: Path,  # noqa: F811
) -> None:
    server = new_gatehouse(small_disk / "data")
    api = server.client()
    device = new_device(api, make_th_product(api, PLATFORM_JS))
    with connect(server.mqtt_port, device) as client:
        assert reply_frame(post_raw(client, device, report(1, 20.0, 50))) == (REPORT_REPLY, 1, 200)
        filler = _fill(small_disk)
        try:
            # A post that made it into a page the disk still had is stored (200); the
            # first that is not gets the script's frame with 500, not JSON.
            codes = []
            for n in range(2, 17):
                command, request_id, code = reply_frame(
                    post_raw(client, device, report(n, 20.0, 50))
                )
                assert (command, request_id) == (REPORT_REPLY, n)
                codes.append(code)
                if code != 200:
                    break
            assert codes[-1] == 500, codes
        finally:
            filler.unlink()


# -- applications' streams: the `custom` kind ---------------------------------------------


def webhook_messages(
    gatehouse: Gatehouse,
    api: Api,
    th_product: Callable[..., str],
    frames: list[tuple[str, bytes]],
    count: int,
) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """A device of a new Custom product (TRANSFORM_JS) publishes `frames` (a custom topic's
    name, tagged or not, and its bytes) at QoS 1; the device, and the first `count`
    messages a webhook asking for kind `custom` got, in order."""
    from tests.test_webhooks import Receiver

    receiver = Receiver()
    try:
        product_key = th_product(TRANSFORM_JS)
        device = new_device(api, product_key)
        body = {"url": receiver.url, "productKeys": [product_key], "kinds": ["custom"]}
        api("webhooks", "create", body).ok()
        with connect(gatehouse.mqtt_port, device) as client:
            for name, payload in frames:
                client.publish(custom(device, name), payload, qos=1)
        messages: list[dict[str, Any]] = []
        while len(messages) < count:
            messages += receiver.next(timeout=10)[1]["messages"]
    finally:
        receiver.server.shutdown()
    return device, messages


def test_custom_topic_messages_reach_webhooks_as_the_custom_kind(
    gatehouse: Gatehouse, api: Api, th_product: Callable[..., str]
) -> None:
    """A webhook asking for `custom` gets each stored custom-topic message: the script's
    JSON for a tagged one, the bytes in base64 for an untagged one; a parse that failed
    reaches no stream (it is live-only `refused`: the second frame, 26007, is not among
    the two that come, in order)."""
    frames = [("update" + TAG, frame(21.5, 40)), ("shape" + TAG, b"\x01"), ("raw", b"\x00\xff")]
    device, (parsed, raw) = webhook_messages(gatehouse, api, th_product, frames, 2)
    assert parsed["kind"] == raw["kind"] == "custom"
    assert parsed["deviceKey"] == device["deviceKey"]
    assert parsed["topic"] == custom(device, "update")  # untagged, as subscribers see it
    assert parsed["value"] == {
        "topic": custom(device, "update"),
        "temperature": 21.5,
        "humidity": 40,
    }
    assert (raw["topic"], raw["payloadBase64"]) == (custom(device, "raw"), "AP8=")


def test_custom_is_a_kind_a_subscription_can_ask_for(api: Api) -> None:
    made = api("subscriptions", "create", {"kinds": ["custom"]}).data
    assert api("subscriptions", "get", subId=made["subId"]).data["kinds"] == ["custom"]
    refused = api("subscriptions", "create", {"kinds": ["customs"]})
    assert refused.status == 400 and "custom" in refused.msg


# -- retention and the payload limit -------------------------------------------------------


def test_nobody_retains_on_a_custom_topic_before_its_product_exists(
    open_gatehouse: Gatehouse,
) -> None:
    """An anonymous client's retained message on `/{pk}/{dk}/user/...` of no product
    (yet) is routed but not kept: once the product is made with that key, its
    application and devices receive nothing of it."""
    api = open_gatehouse.client()
    product_key = unique("squat").replace("-", "")
    squatted = f"/{product_key}/dev/user/update"
    with Client(open_gatehouse.mqtt_port, unique("anon")) as squatter:
        assert squatter.accepted
        assert squatter.subscribe(squatted, 1) == 1
        squatter.publish(squatted, b"squatted", qos=1, retain=True)
        assert squatter.next_received(squatted).payload == b"squatted"  # routed as usual
    model = unique("model")
    api("thing-models", "create", {"modelId": model, "tsl": THERMOSTAT_TSL}).ok()
    body = {"productName": unique("late"), "modelId": model, "productKey": product_key}
    assert api("products", "create", with_mandatory(body)).data == product_key
    with app_client(open_gatehouse) as app, Client(open_gatehouse.mqtt_port, unique("a")) as anon:
        assert app.subscribe(f"/{product_key}/+/user/#", 1) == 1
        assert anon.subscribe("/+/+/user/#", 1) == 1
        assert quiet(app, anon)


def log_of(api: Api, device: dict[str, str], wanted_topic: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = eventually(lambda: log_entries(api, device, wanted_topic))
    return entries


def oversized(server: Gatehouse) -> float:
    from tests.test_metrics import _scrape, _value

    return _value(_scrape(server), "gatehouse_mqtt_packets_total", event="oversized")


@pytest.mark.parametrize("tag", ["", TAG])
def test_a_custom_message_over_the_payload_limit_is_not_delivered_and_logs_its_code(
    open_gatehouse: Gatehouse, tag: str
) -> None:
    api = open_gatehouse.client()
    device = new_device(api, make_th_product(api))
    raw = custom(device, "raw")
    before = oversized(open_gatehouse)
    with app_client(open_gatehouse) as app, connect(open_gatehouse.mqtt_port, device) as client:
        assert app.subscribe(f"/{device['productKey']}/+/user/#", 1) == 1
        assert client.subscribe(custom(device, "#"), 1) == 1
        client.publish(raw + tag, b"\x01" * (OPEN_MAX_PAYLOAD + 1), qos=1)  # PUBACKed
        client.publish(raw, b"within", qos=1)  # what follows is served as usual
        assert app.next_received(raw).payload == b"within"
        assert client.next_received(raw).payload == b"within"
        assert quiet(app, client)
    entry = log_of(api, device, raw + tag)[-1]
    assert entry["code"] == 1220 and f"the limit is {OPEN_MAX_PAYLOAD}" in entry["detail"]
    assert oversized(open_gatehouse) == before + 1


def test_custom_messages_over_16_kib_reach_the_streams_whole(
    gatehouse: Gatehouse, api: Api, th_product: Callable[..., str]
) -> None:
    """The message log keeps 16 KiB of a payload; the streams get the message whole."""
    size = 20_000
    frames = [("big" + TAG, b"\x02" * size), ("raw", b"\xff" * size)]
    device, (parsed, raw) = webhook_messages(gatehouse, api, th_product, frames, 2)
    assert parsed["value"] == {"topic": custom(device, "big"), "pad": "x" * size}
    assert base64.b64decode(raw["payloadBase64"]) == b"\xff" * size
    # The message log has the first 16 KiB of each.
    logged = log_of(api, device, custom(device, "raw"))[0]
    assert len(bytes.fromhex(logged["payloadHex"])) == 16 * 1024
