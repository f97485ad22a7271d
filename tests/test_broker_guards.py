"""What the broker core guards beyond MQTT itself, against a real `gatehouse serve`:
retained messages bounded and kept out of the device namespaces, the payload limit on
every PUBLISH, wills routed like any PUBLISH of their client, a broker-ended connection
that still sends the will and runs the disconnect hooks, and wide filters for
applications and plain clients that see only what they may (issue 14)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from broker.protocol import encode_request
from simulators.platform import with_mandatory
from tests.conftest import THERMOSTAT_TSL, unique
from tests.devices import connect, eventually, new_device, request, topic
from tests.mqtt_client import Client, Message, Will
from tests.server import Api, Gatehouse

MAX_PAYLOAD = 4096


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gatehouse]:
    extra = ("--allow-anonymous", "--max-payload", str(MAX_PAYLOAD))
    started = Gatehouse(
        tmp_path_factory.mktemp("guards") / "data",
        extra_args=(*extra, "--on-refused-publish", "disconnect"),
    ).start()
    yield started
    started.stop()


def new_product(api: Api) -> str:
    model = unique("model")
    api("thing-models", "create", {"modelId": model, "tsl": THERMOSTAT_TSL}).ok()
    key: str = api(
        "products", "create", with_mandatory({"productName": unique("p"), "modelId": model})
    ).data
    return key


@pytest.fixture(scope="module")
def product(server: Gatehouse) -> str:
    return new_product(server.client())


def app_client(server: Gatehouse, key: str | None = None, secret: str | None = None) -> Client:
    app = Client(
        server.mqtt_port, unique("app"), key or server.access_key, secret or server.access_secret
    )
    assert app.accepted
    return app


def until(client: Client, wanted: str) -> list[Message]:
    """Every message up to and including the first on `wanted`."""
    seen: list[Message] = []
    while True:
        message = client.received.get(timeout=5)
        seen.append(message)
        if message.topic == wanted:
            return seen


def state(api: Api, device: dict[str, str]) -> str:
    data: dict[str, Any] = api(
        "devices", "get", productKey=device["productKey"], deviceKey=device["deviceKey"]
    ).ok()
    return str(data["state"])


def post(measurepoints: dict[str, Any]) -> bytes:
    return encode_request(unique("id"), "thing.measurepoint.post", {"measurepoints": measurepoints})


# -- item 5: retained messages ---------------------------------------------------------


def test_a_device_retains_nothing_in_its_namespace(server: Gatehouse, product: str) -> None:
    """Devices do not retain on the platforms: the message is routed, not kept."""
    device = new_device(server.client(), product)
    state_topic = topic(device, "x/state")
    watcher = app_client(server)
    with connect(server.mqtt_port, device) as client, watcher:
        assert watcher.subscribe(f"/sys/{product}/#", qos=1) == 1
        client.publish(state_topic, b"R" * 2048, qos=1, retain=True)
        routed = watcher.next_received(state_topic)
        assert (len(routed.payload), routed.retain) == (2048, False)
        with app_client(server) as newcomer:
            assert newcomer.subscribe(f"/sys/{product}/#", qos=1) == 1
            client.publish(topic(device, "x/marker"), b"after", qos=1)
            assert [m.topic for m in until(newcomer, topic(device, "x/marker"))] == [
                topic(device, "x/marker")
            ]


def test_the_payload_limit_applies_to_every_publish(server: Gatehouse) -> None:
    """--max-payload holds for plain clients too, retained or not: nothing over it is
    routed or kept."""
    root = f"guard/{unique()}"
    watcher = Client(server.mqtt_port, unique("w"))
    publisher = Client(server.mqtt_port, unique("p"))
    with watcher, publisher:
        assert watcher.subscribe(f"{root}/#", qos=1) == 1
        publisher.publish(f"{root}/big", b"B" * (MAX_PAYLOAD + 1), qos=1, retain=True)
        publisher.publish(f"{root}/fits", b"F" * MAX_PAYLOAD, qos=1)
        assert [m.topic for m in until(watcher, f"{root}/fits")] == [f"{root}/fits"]
        with Client(server.mqtt_port, unique("n")) as newcomer:
            assert newcomer.subscribe(f"{root}/#") == 0
            publisher.publish(f"{root}/marker", b"m")
            assert [m.topic for m in until(newcomer, f"{root}/marker")] == [f"{root}/marker"]


def test_retained_storage_is_bounded_in_count_and_bytes(tmp_path: Path) -> None:
    """Past --max-retained-messages or --max-retained-bytes a retained PUBLISH is
    routed but not kept; clearing a topic makes room again."""
    args = ("--allow-anonymous", "--max-retained-messages", "3", "--max-retained-bytes", "2500")
    server = Gatehouse(tmp_path / "data", extra_args=args).start()
    try:
        root = f"guard/{unique()}"

        def retained() -> list[tuple[str, int]]:
            with Client(server.mqtt_port, unique("n")) as reader:
                assert reader.subscribe(f"{root}/#") == 0
                publisher.publish(f"{root}/marker", b"m")
                seen = until(reader, f"{root}/marker")[:-1]
                return sorted((m.topic.rsplit("/", 1)[1], len(m.payload)) for m in seen)

        with Client(server.mqtt_port, unique("p")) as publisher:
            for n in range(4):  # the fourth is over the count
                publisher.publish(f"{root}/{n}", b"x" * 100, qos=1, retain=True)
            assert retained() == [("0", 100), ("1", 100), ("2", 100)]
            publisher.publish(f"{root}/0", b"", qos=1, retain=True)
            publisher.publish(f"{root}/3", b"x" * 100, qos=1, retain=True)
            assert retained() == [("1", 100), ("2", 100), ("3", 100)]
            # Over the bytes: not kept, and it still replaces what the topic held.
            publisher.publish(f"{root}/1", b"y" * 2400, qos=1, retain=True)
            assert retained() == [("2", 100), ("3", 100)]
    finally:
        server.stop()


# -- item 9: a connection the broker ends ----------------------------------------------


def test_a_publish_to_sys_ends_the_connection_with_its_will_and_no_traceback(
    server: Gatehouse,
) -> None:
    will_topic = f"guard/{unique()}/will"
    with Client(server.mqtt_port, unique("w")) as watcher:
        assert watcher.subscribe(will_topic, qos=1) == 1
        leaving = Client(server.mqtt_port, unique("l"), will=Will(will_topic, b"gone", qos=1))
        leaving.paho.publish("$SYS/x", b"no")
        assert leaving.disconnected.wait(5)
        assert watcher.next_received(will_topic).payload == b"gone"
        leaving.close()
    log = server.log()
    assert "InvalidStateError" not in log and "Traceback" not in log


def test_a_device_disconnected_for_a_refused_publish_goes_offline(
    server: Gatehouse, product: str
) -> None:
    """--on-refused-publish disconnect: the disconnect hooks run, so presence says offline."""
    api = server.client()
    device, other = new_device(api, product), new_device(api, product)
    client = connect(server.mqtt_port, device)
    try:
        assert client.accepted
        eventually(lambda: state(api, device) == "online")
        client.paho.publish(topic(other, "thing/measurepoint/post"), b"{}", qos=1)
        assert client.disconnected.wait(5)
        eventually(lambda: state(api, device) == "offline")
    finally:
        client.close()
    assert "Traceback" not in server.log()


# -- item 10: a will is a PUBLISH of its client ----------------------------------------


def test_a_devices_will_is_checked_against_its_thing_model(server: Gatehouse, product: str) -> None:
    device = new_device(server.client(), product)
    post_topic = topic(device, "thing/measurepoint/post")
    api = server.client()
    with app_client(server) as app:
        assert app.subscribe(f"/sys/{product}/+/thing/measurepoint/post", qos=1) == 1
        invalid = Will(post_topic, post({"temp": 99999, "unknown": 1}), qos=1)
        first = connect(server.mqtt_port, device, will=invalid)
        assert first.accepted
        first.drop()
        eventually(lambda: state(api, device) == "offline")
        valid = Will(post_topic, post({"temp": 21.5}), qos=1)
        second = connect(server.mqtt_port, device, will=valid)
        assert second.accepted
        second.drop()
        arrived = app.next_received(post_topic)
        assert orjson.loads(arrived.payload)["params"]["measurepoints"] == {"temp": 21.5}


# -- wide filters ------------------------------------------------------------------------


def test_an_application_subscribed_to_everything_sees_its_own_organisation_only(
    server: Gatehouse, product: str
) -> None:
    api = server.client()
    tenant = api("organizations", "create", {"name": unique("tenant")}).ok()
    other_api = Api(server.url, tenant["accessKey"], tenant["accessSecret"], tenant["orgId"])
    foreign = new_device(other_api, new_product(other_api))
    mine = new_device(api, product)
    everything = app_client(server)
    devices_only = app_client(server)
    with everything, devices_only:
        assert everything.subscribe("#", qos=1) == 1
        assert devices_only.subscribe("/sys/+/+/#", qos=1) == 1
        with connect(server.mqtt_port, foreign) as stranger:
            measurepoints = {"measurepoints": {"temp": 20.0}}
            assert (
                request(stranger, foreign, "thing/measurepoint/post", measurepoints)["code"] == 200
            )
        with connect(server.mqtt_port, mine) as own:
            measurepoints = {"measurepoints": {"temp": 20.0}}
            assert request(own, mine, "thing/measurepoint/post", measurepoints)["code"] == 200
        for app in (everything, devices_only):
            seen = until(app, topic(mine, "thing/measurepoint/post"))
            # Its own devices' topics, and (for '#') their lifecycle topics.
            own_topics = (f"/sys/{product}/", f"/as/mqtt/status/{product}/")
            assert all(m.topic.startswith(own_topics) for m in seen), seen


def test_an_anonymous_client_subscribed_to_everything_sees_no_device_traffic(
    server: Gatehouse, product: str
) -> None:
    device = new_device(server.client(), product)
    marker = f"guard/{unique()}/marker"
    with Client(server.mqtt_port, unique("snoop")) as snoop:
        assert snoop.subscribe("#", qos=1) == 1
        with connect(server.mqtt_port, device) as client:
            measurepoints = {"measurepoints": {"temp": 20.0}}
            assert request(client, device, "thing/measurepoint/post", measurepoints)["code"] == 200
        snoop.publish(marker, b"m")
        assert [m.topic for m in until(snoop, marker)] == [marker]
