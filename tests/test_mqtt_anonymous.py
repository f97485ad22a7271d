"""`gatehouse serve` runs the MQTT broker: nothing anonymous unless --allow-anonymous,
and anonymous clients never reach the device namespaces."""

from __future__ import annotations

import queue
from collections.abc import Iterator

import pytest

from tests.mqtt_client import Client
from tests.server import Gatehouse


@pytest.fixture(scope="module")
def open_gatehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gatehouse]:
    server = Gatehouse(
        tmp_path_factory.mktemp("anon") / "data", extra_args=("--allow-anonymous",)
    ).start()
    yield server
    server.stop()


def test_anonymous_clients_are_refused_by_default(gatehouse: Gatehouse) -> None:
    client = Client(gatehouse.mqtt_port, "nobody")
    try:
        assert client.connack == 5  # not authorised
    finally:
        client.close()
    named = Client(gatehouse.mqtt_port, "someone", username="user", password="guess")
    try:
        assert named.connack == 5
    finally:
        named.close()


def test_allowed_anonymous_clients_exchange_messages(open_gatehouse: Gatehouse) -> None:
    reader = Client(open_gatehouse.mqtt_port, "reader")
    writer = Client(open_gatehouse.mqtt_port, "writer")
    try:
        assert reader.accepted and writer.accepted
        assert reader.subscribe("demo/+/temp") == 0
        writer.publish("demo/kitchen/temp", b"21.5")
        assert reader.next_message() == ("demo/kitchen/temp", b"21.5", 0)
    finally:
        reader.close()
        writer.close()


@pytest.mark.parametrize(
    "topic_filter", ["/sys/pk/dk/thing/service/reboot", "/ext/session/#", "/sys/#", "$SYS/#"]
)
def test_anonymous_subscriptions_to_reserved_namespaces_are_refused(
    open_gatehouse: Gatehouse, topic_filter: str
) -> None:
    client = Client(open_gatehouse.mqtt_port, "snoop")
    try:
        assert client.subscribe(topic_filter) == 0x80
        # The refusal is per filter: the connection stays usable.
        assert client.subscribe("demo/ok") == 0
    finally:
        client.close()


@pytest.mark.parametrize("topic_filter", ["#", "/#", "+/sys/#", "+/+"])
def test_anonymous_wide_filters_are_granted(open_gatehouse: Gatehouse, topic_filter: str) -> None:
    """Issue 14: `mosquitto_sub -t '#'` works; the namespaces are kept out per delivery."""
    client = Client(open_gatehouse.mqtt_port, "watcher")
    try:
        assert client.subscribe(topic_filter) == 0
    finally:
        client.close()


def test_anonymous_publishes_into_reserved_namespaces_go_nowhere(
    open_gatehouse: Gatehouse,
) -> None:
    reader = Client(open_gatehouse.mqtt_port, "reader2")
    writer = Client(open_gatehouse.mqtt_port, "writer2")
    try:
        assert reader.subscribe("demo/after") == 0
        writer.publish("/sys/pk/dk/thing/service/reboot", b"{}")
        writer.publish("demo/after", b"still here")
        # The permitted message arrives; nothing from the reserved topic came first.
        assert reader.next_message() == ("demo/after", b"still here", 0)
        with pytest.raises(queue.Empty):
            reader.next_message(timeout=0.3)
    finally:
        reader.close()
        writer.close()


def test_serve_help_names_the_mqtt_options(gatehouse: Gatehouse) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "broker.cli", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "--mqtt-port" in result.stdout and "--allow-anonymous" in result.stdout
