"""The ACL holds for queued deliveries too: a message queued for a client behind its
full in-flight window is checked again as it leaves the queue, so what the client may
no longer receive (here: a deleted product's traffic, for an application) never goes
out. Real serve, a raw-socket application that holds back its PUBACKs."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable

from tests.conftest import unique
from tests.devices import connect, eventually, new_device, request
from tests.raw_mqtt import connect_packet, read_packet, subscribe_packet
from tests.server import Api, Gatehouse
from tests.test_core_bounds import _core_counter

PUBLISH, SUBACK, CONNACK, PINGRESP = 0x30, 0x90, 0x20, 0xD0
IN_FLIGHT = 100  # CoreLimits.max_inflight, the session server's default
POSTS = 70  # each is two deliveries to the application: the post and its reply


def _packet_id(body: bytes) -> int:
    (topic_length,) = struct.unpack("!H", body[:2])
    packet_id: int = struct.unpack("!H", body[2 + topic_length : 4 + topic_length])[0]
    return packet_id


def test_a_queued_message_the_client_may_no_longer_receive_is_dropped(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str]
) -> None:
    product = make_product()
    device = new_device(api, product)
    app = socket.create_connection(("127.0.0.1", gatehouse.mqtt_port), timeout=5)
    try:
        app.sendall(
            connect_packet(
                unique("app"), username=gatehouse.access_key, password=gatehouse.access_secret
            )
        )
        connack = read_packet(app, time.monotonic() + 5)
        assert connack is not None and connack[0] == CONNACK and connack[1][1] == 0
        app.sendall(subscribe_packet([(f"/sys/{product}/+/#", 1)]))
        suback = read_packet(app, time.monotonic() + 5)
        assert suback is not None and suback[0] == SUBACK and suback[1][2] == 1
        with connect(gatehouse.mqtt_port, device) as client:
            for i in range(POSTS):
                post = {"measurepoints": {"temp": float(i)}}
                assert request(client, device, "thing/measurepoint/post", post)["code"] == 200
        # The application acknowledges nothing yet: its window fills, the rest queue.
        held: list[int] = []
        while len(held) < IN_FLIGHT:
            packet = read_packet(app, time.monotonic() + 10)
            assert packet is not None
            if packet[0] & 0xF0 == PUBLISH:
                held.append(_packet_id(packet[1]))
        queued = 2 * POSTS - IN_FLIGHT
        keys = {"productKey": product, "deviceKey": device["deviceKey"]}
        api("devices", "delete", **keys).ok()
        api("products", "delete", productKey=product).ok()
        refused = _core_counter(gatehouse, "refused_queued")
        for packet_id in held:  # now the window opens: the queue drains through the ACL
            app.sendall(b"\x40\x02" + struct.pack("!H", packet_id))
        eventually(lambda: _core_counter(gatehouse, "refused_queued") >= refused + queued)
        app.sendall(b"\xc0\x00")  # PINGREQ: what was sent before its answer is read by then
        while (packet := read_packet(app, time.monotonic() + 10)) is not None:
            assert packet[0] & 0xF0 != PUBLISH, "a queued message of a deleted product went out"
            if packet[0] == PINGRESP:
                break
    finally:
        app.close()
