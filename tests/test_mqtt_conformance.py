"""MQTT 3.1.1's normative statements on sessions, retained messages, QoS 1 and 2 flows,
wills, SUBSCRIBE and UNSUBSCRIBE, walked against both broker cores.

Each test names the statements it checks ([MQTT-x.y.z-n] of the OASIS standard). Every
test runs on `gatehouse serve --allow-anonymous` and on stock amqtt 0.12.1; where stock
amqtt breaks the statement, its run is a strict expected failure, so the test is shown
to catch the break. The client is a raw socket (`Wire`), since paho hides exactly what
is checked here: DUP flags, packet ids, and which packet comes first.

Statements about malformed packets (U+0000 in topics, will flags without a will, packet
parsing) are checked in the packet-level tests, not here.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.brokers import GATEHOUSE, STOCK, Core, gatehouse_core, stock_core
from tests.conftest import unique

TIMEOUT = 5.0

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 10, 11, 12, 13, 14


# -- a raw MQTT 3.1.1 client -----------------------------------------------------------


def _length(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(data: str | bytes) -> bytes:
    raw = data.encode() if isinstance(data, str) else data
    return struct.pack("!H", len(raw)) + raw


def _packet(kind: int, flags: int, body: bytes) -> bytes:
    return bytes([kind << 4 | flags]) + _length(len(body)) + body


@dataclass(frozen=True)
class Packet:
    kind: int
    flags: int
    body: bytes

    @property
    def packet_id(self) -> int:
        """The packet id of an acknowledgement, SUBACK or UNSUBACK."""
        packet_id: int = struct.unpack("!H", self.body[:2])[0]
        return packet_id


@dataclass(frozen=True)
class Publish:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    packet_id: int | None


def parse_publish(packet: Packet) -> Publish:
    assert packet.kind == PUBLISH, f"expected PUBLISH, got {packet}"
    qos = (packet.flags >> 1) & 3
    size = struct.unpack("!H", packet.body[:2])[0]
    topic = packet.body[2 : 2 + size].decode()
    rest = packet.body[2 + size :]
    packet_id = None
    if qos:
        packet_id, rest = struct.unpack("!H", rest[:2])[0], rest[2:]
    return Publish(topic, rest, qos, bool(packet.flags & 1), bool(packet.flags & 8), packet_id)


@dataclass(frozen=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False


class Wire:
    """One MQTT connection, byte by byte: nothing is acknowledged unless the test says so."""

    def __init__(
        self,
        port: int,
        client_id: str,
        *,
        clean: bool = True,
        username: str | None = None,
        will: Will | None = None,
        keepalive: int = 60,
    ) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self._buffer = b""
        flags = 0x02 if clean else 0
        payload = _string(client_id)
        if will is not None:
            flags |= 0x04 | will.qos << 3 | (0x20 if will.retain else 0)
            payload += _string(will.topic) + _string(will.payload)
        if username is not None:
            flags |= 0x80
            payload += _string(username)
        header = _string("MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive)
        self.sock.sendall(_packet(CONNECT, 0, header + payload))
        connack = self.next_packet()
        assert connack.kind == CONNACK, f"expected CONNACK, got {connack}"
        self.session_present = bool(connack.body[0] & 1)
        self.return_code = connack.body[1]

    # reading

    def _read(self, n: int, deadline: float) -> bytes:
        while len(self._buffer) < n:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.001))
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the broker closed the connection")
            self._buffer += chunk
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def next_packet(self, timeout: float = TIMEOUT) -> Packet:
        deadline = time.monotonic() + timeout
        first = self._read(1, deadline)[0]
        length, shift = 0, 0
        while True:
            digit = self._read(1, deadline)[0]
            length += (digit & 0x7F) << shift
            shift += 7
            if not digit & 0x80:
                break
        return Packet(first >> 4, first & 0x0F, self._read(length, deadline))

    def expect(self, kind: int, timeout: float = TIMEOUT) -> Packet:
        packet = self.next_packet(timeout)
        assert packet.kind == kind, f"expected packet type {kind}, got {packet}"
        return packet

    def next_publish(self, timeout: float = TIMEOUT) -> Publish:
        return parse_publish(self.expect(PUBLISH, timeout))

    def until_closed(self, timeout: float = TIMEOUT) -> list[Packet]:
        """Every packet the broker sends until it closes the connection."""
        packets: list[Packet] = []
        try:
            while True:
                packets.append(self.next_packet(timeout))
        except ConnectionError:
            return packets

    def quiet(self, timeout: float = TIMEOUT) -> list[Packet]:
        """Packets that arrive before the answer to a PINGREQ sent now (then the PINGRESP)."""
        self.ping()
        before: list[Packet] = []
        while (packet := self.next_packet(timeout)).kind != PINGRESP:
            before.append(packet)
        return before

    # writing

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 0,
        *,
        retain: bool = False,
        dup: bool = False,
        packet_id: int = 1,
    ) -> None:
        flags = qos << 1 | (1 if retain else 0) | (8 if dup else 0)
        body = _string(topic) + (struct.pack("!H", packet_id) if qos else b"") + payload
        self.send(_packet(PUBLISH, flags, body))

    def ack(self, kind: int, packet_id: int) -> None:
        """PUBACK, PUBREC, PUBREL (flags 0b0010) or PUBCOMP for `packet_id`."""
        self.send(_packet(kind, 2 if kind == PUBREL else 0, struct.pack("!H", packet_id)))

    def acknowledge(self, message: Publish) -> None:
        """Complete the receiver's side of a delivery: PUBACK, or PUBREC then PUBCOMP."""
        if message.qos == 0:
            return
        assert message.packet_id is not None
        if message.qos == 1:
            self.ack(PUBACK, message.packet_id)
        elif message.qos == 2:
            self.ack(PUBREC, message.packet_id)
            assert self.expect(PUBREL).packet_id == message.packet_id
            self.ack(PUBCOMP, message.packet_id)

    def publish_acked(
        self, topic: str, payload: bytes, qos: int, *, retain: bool = False, packet_id: int = 1
    ) -> None:
        """Publish and complete the sender's side of the flow."""
        self.publish(topic, payload, qos, retain=retain, packet_id=packet_id)
        if qos == 1:
            assert self.expect(PUBACK).packet_id == packet_id
        elif qos == 2:
            assert self.expect(PUBREC).packet_id == packet_id
            self.ack(PUBREL, packet_id)
            assert self.expect(PUBCOMP).packet_id == packet_id

    def subscribe(self, filters: list[tuple[str, int]], packet_id: int = 1) -> list[int]:
        body = struct.pack("!H", packet_id) + b"".join(
            _string(topic) + bytes([qos]) for topic, qos in filters
        )
        self.send(_packet(SUBSCRIBE, 2, body))
        suback = self.expect(SUBACK)
        assert suback.packet_id == packet_id  # [MQTT-3.8.4-2]
        return list(suback.body[2:])

    def unsubscribe(self, filters: list[str], packet_id: int = 1) -> None:
        body = struct.pack("!H", packet_id) + b"".join(_string(topic) for topic in filters)
        self.send(_packet(UNSUBSCRIBE, 2, body))
        assert self.expect(UNSUBACK).packet_id == packet_id  # [MQTT-3.10.4-4]

    def settle(self) -> None:
        """Return once the broker has routed every PUBLISH this client sent before: they
        are routed in order, so a marker to the client itself comes back after them."""
        topic = unique("settle/")
        assert self.subscribe([(topic, 0)], packet_id=65000) == [0]
        self.publish(topic, b"settled")
        while True:
            packet = self.next_packet()
            if packet.kind == PUBLISH and parse_publish(packet).topic == topic:
                break
        self.unsubscribe([topic], packet_id=65001)

    def ping(self) -> None:
        self.send(_packet(PINGREQ, 0, b""))

    def disconnect(self) -> None:
        """A clean DISCONNECT; the socket stays open for `until_closed`."""
        self.send(_packet(DISCONNECT, 0, b""))

    def close(self) -> None:
        """DISCONNECT, and wait until the broker has closed the connection (so that what
        happens next happens to a disconnected session)."""
        try:
            self.disconnect()
            self.until_closed()
        except OSError:
            pass
        self.sock.close()

    def drop(self) -> None:
        """Close the socket without DISCONNECT, as a client losing its network would."""
        self.sock.close()


# -- the cores -------------------------------------------------------------------------

STOCK_FAILS = pytest.mark.xfail(strict=True, reason="stock amqtt 0.12.1 breaks this statement")
BOTH = pytest.mark.parametrize("core", [GATEHOUSE, STOCK], indirect=True)
GATEHOUSE_ONLY = pytest.mark.parametrize("core", [GATEHOUSE], indirect=True)
STOCK_BREAKS = pytest.mark.parametrize(
    "core", [GATEHOUSE, pytest.param(STOCK, marks=STOCK_FAILS)], indirect=True
)


@pytest.fixture(scope="module")
def shared_gatehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Core]:
    server, found = gatehouse_core(tmp_path_factory.mktemp(GATEHOUSE))
    yield found
    server.stop()


@pytest.fixture
def core(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Core]:
    """Gatehouse is shared by the module (tests keep apart by unique topics); stock amqtt
    is started per test, since its defect 3 (retained messages replayed to every new
    client) would let one test's retained messages spill into the next."""
    if request.param == GATEHOUSE:
        yield request.getfixturevalue("shared_gatehouse")
        return
    stock, found = stock_core(tmp_path)
    yield found
    stock.stop()


@pytest.fixture
def wire(core: Core) -> Iterator[Callable[..., Wire]]:
    """Open raw connections to the core; all are closed after the test."""
    opened: list[Wire] = []

    def connect(
        client_id: str | None = None, *, clean: bool = True, will: Will | None = None
    ) -> Wire:
        username = core.admitted.get("username")
        client = Wire(
            core.port, client_id or unique("c"), clean=clean, username=username, will=will
        )
        assert client.return_code == 0
        opened.append(client)
        return client

    yield connect
    for client in opened:
        client.close()


def base() -> str:
    return f"conf/{unique()}"


# -- retained messages -----------------------------------------------------------------


def two_level_topics() -> list[str]:
    """Topics like the interoperability suite's TopicA/B, Topic/C and TopicA/C, unique to
    the test, and matched by a plain `+/+`."""
    tag = unique("Topic")
    return [f"{tag}A/B", f"{tag}/C", f"{tag}A/C"]


@STOCK_BREAKS
def test_retained_messages_at_each_qos_reach_a_new_wildcard_subscription(
    wire: Callable[..., Wire],
) -> None:
    """[MQTT-3.3.1-5] retained at any QoS is stored; [MQTT-3.3.1-6] and [MQTT-3.3.1-8] a
    new matching subscription (`+/+`) gets each, RETAIN set; [MQTT-3.3.5-1] at min(QoS)."""
    topics = two_level_topics()
    publisher = wire()
    try:
        for qos, topic in enumerate(topics):
            publisher.publish_acked(topic, f"retained {qos}".encode(), qos, retain=True)
        publisher.settle()
        subscriber = wire()
        assert subscriber.subscribe([("+/+", 2)]) == [2]
        got = {}
        for _ in range(3):
            message = subscriber.next_publish()
            subscriber.acknowledge(message)
            got[message.topic] = (message.payload, message.qos, message.retain)
        assert got == {
            topics[0]: (b"retained 0", 0, True),
            topics[1]: (b"retained 1", 1, True),
            topics[2]: (b"retained 2", 2, True),
        }
        assert subscriber.quiet() == []
    finally:
        for topic in topics:
            publisher.publish(topic, b"", retain=True)
        publisher.settle()


@BOTH
def test_a_retained_publish_with_an_empty_payload_removes_the_retained_message(
    wire: Callable[..., Wire],
) -> None:
    """[MQTT-3.3.1-10] an empty retained PUBLISH removes the topic's retained message and
    is delivered as normal; [MQTT-3.3.1-11] it is not stored itself."""
    topic = f"{base()}/state"
    publisher = wire()
    watcher = wire()
    assert watcher.subscribe([(topic, 0)]) == [0]
    publisher.publish(topic, b"on", retain=True)
    assert watcher.next_publish().payload == b"on"
    publisher.publish(topic, b"", retain=True)
    cleared = watcher.next_publish()
    assert (cleared.topic, cleared.payload) == (topic, b"")
    publisher.settle()
    newcomer = wire()
    assert newcomer.subscribe([(topic, 0)]) == [0]
    assert newcomer.quiet() == []


@STOCK_BREAKS
def test_a_retained_message_replaces_the_previous_one(wire: Callable[..., Wire]) -> None:
    """[MQTT-3.3.1-5] the server replaces any retained message for the topic;
    [MQTT-3.3.1-9] a message forwarded to an existing subscription has RETAIN 0."""
    topic = f"{base()}/state"
    publisher = wire()
    watcher = wire()
    assert watcher.subscribe([(topic, 0)]) == [0]
    publisher.publish(topic, b"first", retain=True)
    publisher.publish(topic, b"second", retain=True)
    forwarded = [watcher.next_publish() for _ in range(2)]
    assert [(m.payload, m.retain) for m in forwarded] == [(b"first", False), (b"second", False)]
    publisher.settle()
    newcomer = wire()
    assert newcomer.subscribe([(topic, 0)]) == [0]
    replayed = newcomer.next_publish()
    assert (replayed.payload, replayed.retain) == (b"second", True)
    assert newcomer.quiet() == []
    publisher.publish(topic, b"", retain=True)


@STOCK_BREAKS
def test_resubscribing_replaces_the_subscription_and_resends_retained(
    wire: Callable[..., Wire],
) -> None:
    """[MQTT-3.8.4-3] a SUBSCRIBE to an existing filter replaces it, and the retained
    messages matching it are re-sent; one copy per message after that."""
    topic = f"{base()}/state"
    client = wire()
    client.publish(topic, b"kept", retain=True)
    client.settle()
    assert client.subscribe([(topic, 0)]) == [0]
    assert client.next_publish().payload == b"kept"
    assert client.subscribe([(topic, 1)], packet_id=2) == [1]
    assert client.next_publish().payload == b"kept"
    client.publish(topic, b"once", 1, packet_id=3)
    packets = [client.next_packet(), client.next_packet()]
    publishes = [parse_publish(p) for p in packets if p.kind == PUBLISH]
    assert [(m.payload, m.qos) for m in publishes] == [(b"once", 1)]
    assert publishes[0].packet_id is not None
    client.ack(PUBACK, publishes[0].packet_id)
    assert client.quiet() == []
    client.publish(topic, b"", retain=True)


# -- sessions --------------------------------------------------------------------------


@BOTH
def test_session_present_says_whether_the_session_was_resumed(wire: Callable[..., Wire]) -> None:
    """[MQTT-3.2.2-1] clean session: Session Present 0; [MQTT-3.2.2-2] resumed: 1;
    [MQTT-3.1.2-6] a clean session discards the stored one and its subscriptions."""
    client_id, topic = unique("sess"), f"{base()}/x"
    first = wire(client_id, clean=False)
    assert not first.session_present
    assert first.subscribe([(topic, 1)]) == [1]
    first.close()
    again = wire(client_id, clean=False)
    assert again.session_present
    again.close()
    fresh = wire(client_id, clean=True)
    assert not fresh.session_present
    fresh.publish(topic, b"nobody listens", 1, packet_id=5)
    assert fresh.expect(PUBACK).packet_id == 5
    assert fresh.quiet() == []


@STOCK_BREAKS
def test_a_persistent_session_gets_qos1_and_qos2_published_while_it_was_away(
    wire: Callable[..., Wire],
) -> None:
    """[MQTT-3.1.2-4], [MQTT-3.1.2-5]: the session keeps its subscriptions (here `+/+`)
    and the QoS 1 and 2 messages that match them while the client is disconnected."""
    client_id, topics = unique("away"), two_level_topics()
    away = wire(client_id, clean=False)
    assert away.subscribe([("+/+", 2)]) == [2]
    away.close()
    publisher = wire()
    publisher.publish_acked(topics[1], b"at least once", 1)
    publisher.publish_acked(topics[2], b"exactly once", 2, packet_id=2)
    publisher.settle()
    back = wire(client_id, clean=False)
    assert back.session_present
    got = []
    for _ in range(2):
        message = back.next_publish()
        back.acknowledge(message)
        got.append((message.topic, message.payload, message.qos, message.dup))
    assert got == [
        (topics[1], b"at least once", 1, False),
        (topics[2], b"exactly once", 2, False),
    ]
    assert back.quiet() == []


@STOCK_BREAKS
def test_qos1_and_qos2_unacknowledged_at_disconnect_are_both_redelivered(
    wire: Callable[..., Wire],
) -> None:
    """[MQTT-4.4.0-1] on reconnect the server re-sends unacknowledged PUBLISHes, with
    [MQTT-3.3.1-1] DUP 1 and the same packet id; then nothing more."""
    client_id, topic = unique("unacked"), f"{base()}/cmd"
    first = wire(client_id, clean=False)
    assert first.subscribe([(topic, 2)]) == [2]
    publisher = wire()
    publisher.publish_acked(topic, b"one", 1)
    publisher.publish_acked(topic, b"two", 2, packet_id=2)
    sent = [first.next_publish(), first.next_publish()]
    assert [(m.payload, m.qos, m.dup) for m in sent] == [(b"one", 1, False), (b"two", 2, False)]
    first.drop()  # neither acknowledged
    back = wire(client_id, clean=False)
    assert back.session_present
    again = [back.next_publish(), back.next_publish()]
    assert [(m.payload, m.qos, m.dup, m.packet_id) for m in again] == [
        (m.payload, m.qos, True, m.packet_id) for m in sent
    ]
    for message in again:
        back.acknowledge(message)
    assert back.quiet() == []


@STOCK_BREAKS
def test_an_outgoing_qos2_flow_resumes_with_pubrel_after_reconnect(
    wire: Callable[..., Wire],
) -> None:
    """[MQTT-4.4.0-1]: a QoS 2 delivery whose PUBREC arrived goes on with PUBREL (not
    the PUBLISH again) when the session resumes; PUBCOMP ends it."""
    client_id, topic = unique("rel"), f"{base()}/cmd"
    first = wire(client_id, clean=False)
    assert first.subscribe([(topic, 2)]) == [2]
    publisher = wire()
    publisher.publish_acked(topic, b"once", 2)
    message = first.next_publish()
    assert message.packet_id is not None
    first.ack(PUBREC, message.packet_id)
    assert first.expect(PUBREL).packet_id == message.packet_id
    first.drop()  # no PUBCOMP
    back = wire(client_id, clean=False)
    assert back.expect(PUBREL).packet_id == message.packet_id
    back.ack(PUBCOMP, message.packet_id)
    assert back.quiet() == []


@STOCK_BREAKS
def test_an_incoming_qos2_publish_is_not_answered_before_it_is_resent(
    wire: Callable[..., Wire],
) -> None:
    """[MQTT-4.4.0-1] on reconnect only PUBLISH and PUBREL are re-sent: the server sends
    no PUBREC of its own; the client's re-sent PUBLISH (DUP) gets it, [MQTT-4.3.3-2] the
    PUBREL gets PUBCOMP, and the message is delivered once."""
    client_id, topic = unique("in2"), f"{base()}/up"
    subscriber = wire()
    assert subscriber.subscribe([(topic, 2)]) == [2]
    sender = wire(client_id, clean=False)
    sender.publish(topic, b"exactly once", 2, packet_id=7)
    sender.drop()  # as if the PUBREC never arrived
    back = wire(client_id, clean=False)
    assert back.session_present
    assert back.quiet() == []  # no PUBREC unasked
    back.publish(topic, b"exactly once", 2, dup=True, packet_id=7)
    assert back.expect(PUBREC).packet_id == 7
    back.ack(PUBREL, 7)
    assert back.expect(PUBCOMP).packet_id == 7
    delivered = subscriber.next_publish()
    subscriber.acknowledge(delivered)
    assert delivered.payload == b"exactly once"
    assert subscriber.quiet() == []


@STOCK_BREAKS
def test_a_pubrel_resent_after_reconnect_completes_the_incoming_flow(
    wire: Callable[..., Wire],
) -> None:
    """[MQTT-4.3.3-2] a receiver answers PUBREL with PUBCOMP, also for a flow begun on
    the previous connection of the session; the message is delivered once."""
    client_id, topic = unique("in2rel"), f"{base()}/up"
    subscriber = wire()
    assert subscriber.subscribe([(topic, 2)]) == [2]
    sender = wire(client_id, clean=False)
    sender.publish(topic, b"once", 2, packet_id=9)
    assert sender.expect(PUBREC).packet_id == 9
    sender.drop()  # PUBREL never sent
    back = wire(client_id, clean=False)
    back.ack(PUBREL, 9)
    assert back.expect(PUBCOMP).packet_id == 9
    delivered = subscriber.next_publish()
    subscriber.acknowledge(delivered)
    assert delivered.payload == b"once"
    assert subscriber.quiet() == []


@BOTH
def test_a_qos2_publish_resent_before_pubrel_is_delivered_once(
    wire: Callable[..., Wire],
) -> None:
    """[MQTT-4.3.3-2]: a PUBLISH re-sent (DUP) before PUBREL is not delivered again."""
    topic = f"{base()}/up"
    subscriber = wire()
    assert subscriber.subscribe([(topic, 2)]) == [2]
    sender = wire()
    sender.publish(topic, b"once", 2, packet_id=3)
    assert sender.expect(PUBREC).packet_id == 3
    sender.publish(topic, b"once", 2, dup=True, packet_id=3)
    assert sender.expect(PUBREC).packet_id == 3
    sender.ack(PUBREL, 3)
    assert sender.expect(PUBCOMP).packet_id == 3
    delivered = subscriber.next_publish()
    subscriber.acknowledge(delivered)
    assert delivered.payload == b"once"
    assert subscriber.quiet() == []


@BOTH
def test_acknowledgements_carry_the_publish_packet_id(wire: Callable[..., Wire]) -> None:
    """[MQTT-4.3.2-2] PUBACK, [MQTT-4.3.3-2] PUBREC and PUBCOMP carry the PUBLISH's id."""
    topic = f"{base()}/ids"
    client = wire()
    client.publish(topic, b"q1", 1, packet_id=4242)
    assert client.expect(PUBACK).packet_id == 4242
    client.publish_acked(topic, b"q2", 2, packet_id=65535)


@GATEHOUSE_ONLY
def test_a_message_not_sent_before_disconnect_is_not_marked_dup_on_resume(
    wire: Callable[..., Wire], core: Core
) -> None:
    """[MQTT-3.3.1-1] DUP is 1 only on a re-delivery: a QoS 1 message handed to the
    connection after the client's DISCONNECT was never sent, so it goes out with DUP 0
    when the session resumes. Nothing is lost (at least once).

    Gatehouse only: whether stock amqtt passes depends on timing (it drops what was in
    flight, and sometimes nothing was), so it cannot be a strict expected failure."""
    client_id, topic = unique("busy"), f"{base()}/stream"
    count = 400
    subscriber = wire(client_id, clean=False)
    assert subscriber.subscribe([(topic, 1)]) == [1]
    publisher = wire()

    def stream() -> None:
        for n in range(count):
            publisher.publish(topic, b"%d" % n, 1, packet_id=n % 60000 + 1)

    sending = threading.Thread(target=stream)
    sending.start()
    seen: set[bytes] = set()
    try:
        # Take part of the stream, acknowledging, then leave while it still flows.
        while len(seen) < count // 4:
            message = subscriber.next_publish()
            assert message.packet_id is not None and not message.dup
            seen.add(message.payload)
            subscriber.ack(PUBACK, message.packet_id)
        subscriber.disconnect()
        for packet in subscriber.until_closed():
            if packet.kind == PUBLISH:
                seen.add(parse_publish(packet).payload)
    finally:
        sending.join()
    back = wire(client_id, clean=False)
    got: set[bytes] = set()
    while len(seen | got) < count:
        message = back.next_publish()
        assert message.packet_id is not None
        assert message.dup == (message.payload in seen), message
        got.add(message.payload)
        back.ack(PUBACK, message.packet_id)
    assert seen | got == {b"%d" % n for n in range(count)}


# -- wills -----------------------------------------------------------------------------


@BOTH
def test_a_will_is_published_when_the_connection_is_lost(wire: Callable[..., Wire]) -> None:
    """[MQTT-3.1.2-8] the will is published when the network connection closes without
    DISCONNECT, [MQTT-3.1.2-15] at its QoS."""
    topic = f"{base()}/will"
    watcher = wire()
    assert watcher.subscribe([(topic, 1)]) == [1]
    leaving = wire(will=Will(topic, b"lost", qos=1))
    leaving.drop()
    message = watcher.next_publish()
    watcher.acknowledge(message)
    assert (message.topic, message.payload, message.qos) == (topic, b"lost", 1)


@BOTH
def test_a_will_is_not_published_after_disconnect(wire: Callable[..., Wire]) -> None:
    """[MQTT-3.1.2-10] DISCONNECT removes the will without publishing it."""
    topic = f"{base()}/will"
    watcher = wire()
    assert watcher.subscribe([(topic, 0)]) == [0]
    leaving = wire(will=Will(topic, b"should not be sent"))
    leaving.disconnect()
    assert leaving.until_closed() == []
    watcher.publish(topic, b"marker")
    assert watcher.next_publish().payload == b"marker"


@BOTH
def test_a_will_reaches_a_persistent_subscriber_that_is_away(wire: Callable[..., Wire]) -> None:
    """[MQTT-3.1.2-8] with [MQTT-3.1.2-5]: a QoS 1 will is kept for a disconnected
    persistent session that subscribed to it."""
    client_id, topic = unique("heir"), f"{base()}/will"
    heir = wire(client_id, clean=False)
    assert heir.subscribe([(topic, 1)]) == [1]
    heir.close()
    leaving = wire(will=Will(topic, b"last words", qos=1))
    leaving.drop()
    back = wire(client_id, clean=False)  # before or after the will was routed: it comes
    assert back.session_present
    message = back.next_publish()
    back.acknowledge(message)
    assert (message.topic, message.payload) == (topic, b"last words")


@STOCK_BREAKS
def test_a_retained_will_is_retained(wire: Callable[..., Wire]) -> None:
    """[MQTT-3.1.2-17] a will with Will Retain 1 is published as a retained message."""
    topic = f"{base()}/will"
    watcher = wire()
    assert watcher.subscribe([(topic, 0)]) == [0]
    leaving = wire(will=Will(topic, b"gone", retain=True))
    leaving.drop()
    assert watcher.next_publish().payload == b"gone"
    newcomer = wire()
    assert newcomer.subscribe([(topic, 0)]) == [0]
    replayed = newcomer.next_publish()
    assert (replayed.payload, replayed.retain) == (b"gone", True)
    newcomer.publish(topic, b"", retain=True)


# -- subscribe and unsubscribe ----------------------------------------------------------


@BOTH
def test_suback_has_one_code_per_filter_in_order(wire: Callable[..., Wire]) -> None:
    """[MQTT-3.8.4-1] SUBACK with [MQTT-3.8.4-2] the same packet id, [MQTT-3.9.3-1] a
    code per filter in order; [MQTT-3.8.4-6] granted QoS may be what was asked."""
    root = base()
    client = wire()
    filters = [(f"{root}/a", 2), (f"{root}/b", 0), (f"{root}/c/#", 1)]
    assert client.subscribe(filters, packet_id=321) == [2, 0, 1]


@BOTH
def test_after_unsubscribe_nothing_more_arrives_for_the_filter(
    wire: Callable[..., Wire],
) -> None:
    """[MQTT-3.10.4-1] UNSUBSCRIBE deletes the subscriptions it names (several in one
    packet), [MQTT-3.10.4-2] the server stops adding messages for them, also for the
    client's own PUBLISHes right behind the UNSUBSCRIBE, and [MQTT-3.10.4-5] UNSUBACK
    comes even for a filter that was never subscribed."""
    topics = two_level_topics()
    client = wire()
    assert client.subscribe([(topic, 1) for topic in topics]) == [1, 1, 1]
    body = struct.pack("!H", 9) + b"".join(
        _string(topic) for topic in (topics[0], topics[2], "never/subscribed")
    )
    client.send(_packet(UNSUBSCRIBE, 2, body))
    for n, topic in enumerate(topics):  # pipelined: no wait for UNSUBACK
        client.publish(topic, topic.encode(), 1, packet_id=n + 10)
    packets = [client.next_packet() for _ in range(5)]  # UNSUBACK, 3 PUBACKs, 1 PUBLISH
    publishes = [parse_publish(p) for p in packets if p.kind == PUBLISH]
    assert [(m.topic, m.payload) for m in publishes] == [(topics[1], topics[1].encode())]
    assert [p.packet_id for p in packets if p.kind == UNSUBACK] == [9]
    client.acknowledge(publishes[0])
    assert client.quiet() == []


@BOTH
def test_unsubscribing_a_wildcard_filter_stops_its_messages(wire: Callable[..., Wire]) -> None:
    """[MQTT-3.10.4-1] filters are compared character by character: the wildcard
    subscription goes, the exact one beside it stays."""
    root = base()
    client = wire()
    assert client.subscribe([(f"{root}/+/x", 0), (f"{root}/#", 0)]) == [0, 0]
    client.unsubscribe([f"{root}/+/x"])
    publisher = wire()
    publisher.publish(f"{root}/a/x", b"via #")
    assert client.next_publish().payload == b"via #"
    client.unsubscribe([f"{root}/#"], packet_id=2)
    publisher.publish(f"{root}/a/x", b"nobody")
    assert client.quiet() == []


@BOTH
def test_wildcard_filters_are_granted_and_match_by_level(wire: Callable[..., Wire]) -> None:
    """[MQTT-4.7.1-2] '#' matches every level below, [MQTT-4.7.1-3] '+' exactly one
    level; '#', '/#' and '+/...' are ordinary filters for a plain client."""
    root = base()
    client = wire()
    assert client.subscribe([("#", 0), ("/#", 0), ("+/+/deep", 0)]) == [0, 0, 0]
    publisher = wire()
    publisher.publish(f"{root}/one/two", b"1")
    messages = [client.next_publish()]
    client.unsubscribe(["#"], packet_id=2)
    publisher.publish(f"{root}/deep", b"2")
    publisher.publish(f"{root}/not/deep", b"none")
    publisher.publish("/lead/slash", b"3")
    messages += [client.next_publish(), client.next_publish()]
    assert [(m.topic, m.payload) for m in messages] == [
        (f"{root}/one/two", b"1"),
        (f"{root}/deep", b"2"),
        ("/lead/slash", b"3"),
    ]
    assert client.quiet() == []
