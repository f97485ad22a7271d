"""An incoming QoS 2 PUBLISH gets its PUBREC only once what it carries is stored
(README, "What is guaranteed"): the broker takes it at once, as MQTT 3.1.1, 4.3.3 lets
a receiver do, answers and stores it as a QoS 1 post, and sends PUBREC when the write
commits. Each flow's packet id is kept until PUBREL, so a resend is not stored twice.

The device is a raw socket, so that the test decides every acknowledgement: paho would
send PUBREL the moment PUBREC arrives.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from broker.protocol import encode_request, enos_credentials
from tests import test_durability as durability
from tests.conftest import unique
from tests.devices import new_device, topic
from tests.raw_mqtt import connect_packet, packets_until_closed, publish_packet, read_packet
from tests.server import Api, Gatehouse

TIMEOUT = 5.0
POST = "thing/measurepoint/post"
PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP, PINGRESP = 3, 4, 5, 6, 7, 13
DUP = 0x08
# The broker's bound on what one connection has read but not finished (CoreLimits).
MAX_INBOUND = 1000

WINDOW = 50  # QoS 2 posts a device keeps in flight in the kill -9 test

small_disk = durability.small_disk  # the fixture: a 40 MB tmpfs, unmounted after the test

Event = tuple[str, Any]  # ("reply", its JSON), ("pubrec" | "pubcomp", packet id), ("pong", None)


class RawDevice:
    """A signed EnOS device on a plain socket: nothing is acknowledged unasked, except
    the replies it receives (PUBACKed, so that they keep coming)."""

    def __init__(self, port: int, device: dict[str, str]) -> None:
        self.device = device
        creds = enos_credentials(
            device["productKey"], device["deviceKey"], device["deviceSecret"], str(time.time())
        )
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.sock.sendall(
            connect_packet(creds.client_id, username=creds.username, password=creds.password)
        )
        connack = read_packet(self.sock, time.monotonic() + TIMEOUT)
        assert connack is not None and connack[0] >> 4 == 2 and connack[1][1] == 0, connack

    def post(self, request_id: str, temp: float, packet_id: int, *, dup: bool = False) -> bytes:
        """Send a QoS 2 measurepoint post; returns the packet, to send it again."""
        params = {"measurepoints": {"temp": temp}, "time": int(time.time() * 1000)}
        payload = encode_request(request_id, "", params)
        packet = publish_packet(topic(self.device, POST), payload, 2, packet_id)
        if dup:
            packet = bytes([packet[0] | DUP]) + packet[1:]
        self.sock.sendall(packet)
        return packet

    def ack(self, kind: int, packet_id: int) -> None:
        flags = 2 if kind == PUBREL else 0
        self.sock.sendall(bytes([kind << 4 | flags, 2]) + struct.pack("!H", packet_id))

    def ping(self) -> None:
        self.sock.sendall(b"\xc0\x00")

    def next_event(self, timeout: float = TIMEOUT) -> Event:
        packet = read_packet(self.sock, time.monotonic() + timeout)
        assert packet is not None, "the broker closed the connection"
        first, body = packet
        kind = first >> 4
        if kind == PUBLISH:
            size = struct.unpack("!H", body[:2])[0]
            rest = body[2 + size :]
            if (first >> 1) & 3:
                self.ack(PUBACK, struct.unpack("!H", rest[:2])[0])
                rest = rest[2:]
            return "reply", orjson.loads(rest)
        if kind in (PUBREC, PUBCOMP):
            return ("pubrec" if kind == PUBREC else "pubcomp"), struct.unpack("!H", body)[0]
        if kind == PINGRESP:
            return "pong", None
        raise AssertionError(f"unexpected packet {packet}")

    def events_until(self, done: Callable[[list[Event]], bool]) -> list[Event]:
        """Events in the order they arrive, until `done` says there are enough."""
        seen: list[Event] = []
        while not done(seen):
            seen.append(self.next_event())
        return seen

    def quiet_until_pong(self) -> list[Event]:
        """What arrives before the answer to a PINGREQ sent now."""
        self.ping()
        return self.events_until(lambda seen: bool(seen) and seen[-1][0] == "pong")[:-1]

    def close(self) -> None:
        self.sock.close()


def _replied_and_received(request_id: str, packet_id: int) -> Callable[[list[Event]], bool]:
    def done(seen: list[Event]) -> bool:
        replied = any(kind == "reply" and value["id"] == request_id for kind, value in seen)
        return replied and ("pubrec", packet_id) in seen

    return done


def _stored_ids(api: Api, device: dict[str, str]) -> list[str]:
    """Request ids of the device's stored posts, read straight away (no sync barrier)."""
    query = {"productKey": device["productKey"], "deviceKey": device["deviceKey"]}
    log = api("devices", "listMessages", kind="up", limit=1000, **query).ok()
    return [orjson.loads(entry["payload"])["id"] for entry in log if entry.get("payload")]


def test_a_qos2_post_gets_its_reply_and_then_its_pubrec_once_stored(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str]
) -> None:
    device = new_device(api, make_product())
    client = RawDevice(gatehouse.mqtt_port, device)
    request_id = unique("q2-")
    client.post(request_id, 21.5, 1)
    # No PUBREL yet: the reply does not wait for it (nor for the PUBREC).
    events = client.events_until(lambda seen: ("pubrec", 1) in seen)
    # Read at once, with no sync barrier: stored by the time its PUBREC arrived.
    assert request_id in _stored_ids(api, device)
    if not any(kind == "reply" for kind, _ in events):
        events += client.events_until(lambda seen: any(kind == "reply" for kind, _ in seen))
    assert sorted(kind for kind, _ in events) == ["pubrec", "reply"], events
    assert [value["code"] for kind, value in events if kind == "reply"] == [200], events
    client.ack(PUBREL, 1)
    assert client.events_until(bool) == [("pubcomp", 1)]
    client.close()


def test_a_resent_qos2_post_is_stored_once_and_every_pubrel_is_completed(
    gatehouse: Gatehouse, api: Api, make_product: Callable[..., str]
) -> None:
    device = new_device(api, make_product())
    client = RawDevice(gatehouse.mqtt_port, device)
    # Sent twice in one write: the resend arrives while the first may still be storing.
    first = unique("q2-")
    packet = client.post(first, 1.0, 7)
    client.sock.sendall(bytes([packet[0] | DUP]) + packet[1:])
    events = client.events_until(_replied_and_received(first, 7))
    # And once more after its PUBREC: it gets PUBREC again, nothing else.
    client.post(first, 1.0, 7, dup=True)
    events += client.events_until(lambda seen: ("pubrec", 7) in seen)
    events += client.quiet_until_pong()
    replies = [value for kind, value in events if kind == "reply"]
    assert [reply["code"] for reply in replies] == [200], events
    assert 2 <= events.count(("pubrec", 7)) <= 3, events
    client.ack(PUBREL, 7)
    assert client.events_until(bool) == [("pubcomp", 7)]
    # [MQTT-4.3.3-2] a PUBREL for an id the broker does not know is completed as well.
    client.ack(PUBREL, 4321)
    assert client.events_until(bool) == [("pubcomp", 4321)]
    # Released: the same packet id now carries a new message.
    second = unique("q2-")
    client.post(second, 2.0, 7)
    client.events_until(_replied_and_received(second, 7))
    client.ack(PUBREL, 7)
    assert client.events_until(bool) == [("pubcomp", 7)]
    stored = _stored_ids(api, device)
    assert stored.count(first) == 1 and stored.count(second) == 1, stored
    client.close()


def test_a_qos2_client_opening_too_many_flows_without_pubrel_is_disconnected(
    new_gatehouse: Callable[..., Gatehouse],
) -> None:
    server = new_gatehouse(None, "--allow-anonymous")
    sock = socket.create_connection(("127.0.0.1", server.mqtt_port), timeout=TIMEOUT)
    sock.sendall(connect_packet(unique("q2bound")))
    assert read_packet(sock, time.monotonic() + TIMEOUT) == (0x20, b"\x00\x00")
    name = unique("q2/bound/")
    sock.sendall(b"".join(publish_packet(name, b"x", 2, i) for i in range(1, MAX_INBOUND + 1)))
    received: set[int] = set()
    while len(received) < MAX_INBOUND:
        packet = read_packet(sock, time.monotonic() + TIMEOUT)
        assert packet is not None and packet[0] == PUBREC << 4, packet
        received.add(struct.unpack("!H", packet[1])[0])
    # One PUBREL frees one flow: a new one then fits, and the one after it does not.
    sock.sendall(bytes([PUBREL << 4 | 2, 2]) + struct.pack("!H", 1))
    assert read_packet(sock, time.monotonic() + TIMEOUT) == (PUBCOMP << 4, b"\x00\x01")
    sock.sendall(publish_packet(name, b"x", 2, 1))
    assert read_packet(sock, time.monotonic() + TIMEOUT) == (PUBREC << 4, b"\x00\x01")
    sock.sendall(publish_packet(name, b"x", 2, MAX_INBOUND + 1))
    assert packets_until_closed(sock, TIMEOUT) == []
    sock.close()


def test_a_qos2_post_that_cannot_be_stored_gets_500_and_no_pubrec(
    new_gatehouse: Callable[..., Gatehouse], small_disk: Path
) -> None:
    server = new_gatehouse(small_disk / "data")
    api = server.client()
    device = new_device(api, durability._product(api))
    client = RawDevice(server.mqtt_port, device)

    def post(request_id: str, packet_id: int, *, dup: bool = False) -> int:
        """The reply code; a 200 must come with PUBREC (then completed), anything else
        without one."""
        client.post(request_id, 3.0, packet_id, dup=dup)
        events = client.events_until(
            lambda seen: any(kind == "reply" and v["id"] == request_id for kind, v in seen)
        )
        code: int = events[-1][1]["code"]
        if code == 200:
            if ("pubrec", packet_id) not in events:
                events += client.events_until(lambda seen: ("pubrec", packet_id) in seen)
            client.ack(PUBREL, packet_id)
            assert client.events_until(bool) == [("pubcomp", packet_id)]
        else:
            events += client.quiet_until_pong()  # what the broker sent after the reply
            assert ("pubrec", packet_id) not in events, events
        return code

    assert post(unique("q2-"), 1) == 200
    filler = durability._fill(small_disk)
    # The first posts may still find a page the disk had: stored, and PUBRECed.
    refused = next(
        (request_id, packet_id)
        for packet_id in range(2, 20)
        if post(request_id := unique("q2-"), packet_id) != 200
    )
    assert refused[0] not in _stored_ids(api, device)
    filler.unlink()  # space returns: the same PUBLISH again is taken as new, and stored
    deadline = time.monotonic() + TIMEOUT
    while post(*refused, dup=True) != 200:
        assert time.monotonic() < deadline, "writing did not resume"
    assert _stored_ids(api, device).count(refused[0]) == 1
    client.close()


@pytest.mark.both_stores
def test_every_qos2_post_that_got_pubrec_survives_kill_9(
    new_gatehouse: Callable[..., Gatehouse], tmp_path: Path
) -> None:
    server = new_gatehouse(tmp_path / "data")
    api = server.client()
    device = new_device(api, durability._product(api))
    client = RawDevice(server.mqtt_port, device)
    sent: dict[int, str] = {}  # packet id -> request id, of the posts in flight
    received: list[str] = []  # request ids of the posts that got PUBREC
    for packet_id in range(1, WINDOW + 1):
        sent[packet_id] = unique("q2-")
        client.post(sent[packet_id], 4.0, packet_id)
    next_id = WINDOW + 1
    while len(received) < 300:
        kind, value = client.next_event()
        if kind == "pubrec":
            received.append(sent.pop(value))
            client.ack(PUBREL, value)
            sent[next_id] = unique("q2-")
            client.post(sent[next_id], 4.0, next_id)
            next_id += 1
    assert server.process is not None
    server.process.kill()  # SIGKILL with WINDOW posts in flight: no shutdown code runs
    server.process.wait()
    client.close()
    again = durability.restart(new_gatehouse, server, tmp_path / "data")
    stored = set(_stored_ids(again, device))
    assert [request_id for request_id in received if request_id not in stored] == []
