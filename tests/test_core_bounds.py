"""Bounds on what one connection can make the broker core hold, with a client that does
not read its socket (README, "What is guaranteed": every queue a client can drive is
bounded). The client is a raw socket, so that it can leave everything unread; the
server is a real `gatehouse serve --allow-anonymous`."""

from __future__ import annotations

import functools
import socket
import struct
import time
from collections.abc import Callable

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import unique
from tests.devices import eventually
from tests.raw_mqtt import (
    connect_packet,
    field,
    publish_packet,
    read_packet,
    subscribe_packet,
)
from tests.server import Gatehouse

TIMEOUT = 5.0
CONNACK, PUBLISH, PUBACK, PUBREC, SUBACK, PINGRESP = 0x20, 0x30, 0x40, 0x50, 0x90, 0xD0
PINGREQ = b"\xc0\x00"
DUP = 0x08
BIG = 500 * 1024  # a QoS 0 payload the client sends itself, to fill its socket


def _core_counter(server: Gatehouse, event: str) -> float:
    response = httpx.get(
        f"{server.url}/metrics", auth=(server.access_key, server.access_secret), timeout=10
    )
    assert response.status_code == 200
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == "gatehouse_mqtt_packets_total" and sample.labels["event"] == event:
                return sample.value
    return 0.0


def _routed_at_least(server: Gatehouse, count: int) -> bool:
    return _core_counter(server, "routed") >= count


def _client(server: Gatehouse, keepalive: int = 60) -> tuple[socket.socket, str]:
    """An anonymous client subscribed (QoS 0) to a topic of its own, returned with it."""
    sock = socket.socket()
    # A small receive window, so that the kernel takes little of what the client does
    # not read and the rest stays in the server's buffer.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    sock.settimeout(TIMEOUT)
    sock.connect(("127.0.0.1", server.mqtt_port))
    sock.sendall(connect_packet(unique("bounds"), keepalive=keepalive))
    assert read_packet(sock, time.monotonic() + TIMEOUT) == (CONNACK, b"\x00\x00")
    echo = unique("bounds/echo/")
    sock.sendall(subscribe_packet([(echo, 0)]))
    assert read_packet(sock, time.monotonic() + TIMEOUT) == (SUBACK, b"\x00\x01\x00")
    return sock, echo


def _stop_reading(server: Gatehouse, sock: socket.socket, echo: str) -> None:
    """Fill the server's buffer towards the client: big QoS 0 echoes of its own PUBLISHes,
    unread, until the broker drops three in a row (the buffer stays over its high water:
    the kernel takes no more of it)."""
    dropped_in_a_row = 0
    for sent in range(1, 41):
        dropped = _core_counter(server, "dropped_slow")
        sock.sendall(publish_packet(echo, b"x" * BIG))
        eventually(functools.partial(_routed_at_least, server, sent))
        if _core_counter(server, "dropped_slow") > dropped:
            dropped_in_a_row += 1
        else:
            dropped_in_a_row = 0
        if dropped_in_a_row == 3:
            assert _core_counter(server, "delivered") > 0  # it did get echoes until then
            return
    raise AssertionError(f"40 echoes of {BIG} bytes never filled the buffer")


def _kinds_until_closed(sock: socket.socket) -> list[int]:
    """The first byte of each packet the server sends until it closes the connection
    (within TIMEOUT), so that a failure does not print megabytes of echoes."""
    deadline, kinds = time.monotonic() + TIMEOUT, []
    try:
        while (packet := read_packet(sock, deadline)) is not None:
            kinds.append(packet[0])
    except TimeoutError:
        raise AssertionError(f"still open after {TIMEOUT} s; packet types {kinds}") from None
    return kinds


def test_a_repeated_qos2_publish_to_a_client_not_reading_ends_it_rather_than_waits(
    new_gatehouse: Callable[..., Gatehouse],
) -> None:
    """Each repeat used to wait (with its whole PUBLISH) to write a PUBREC the client
    would not read, in a task per packet: 200 repeats of 500 kB took 96 MiB."""
    server = new_gatehouse(None, "--allow-anonymous")
    sock, echo = _client(server)
    flow = publish_packet(unique("bounds/q2/"), b"x" * 1000, 2, 1)
    sock.sendall(flow)
    assert read_packet(sock, time.monotonic() + TIMEOUT) == (PUBREC, b"\x00\x01")
    _stop_reading(server, sock, echo)
    sock.sendall(bytes([flow[0] | DUP]) + flow[1:])
    # The repeat's PUBREC does not fit: the connection is ended (what it had not read
    # is dropped), instead of the PUBREC waiting for the client to read.
    assert PUBREC not in _kinds_until_closed(sock)
    sock.close()
    assert "a QoS 2 PUBLISH again while it reads nothing" in server.log()


def test_a_client_not_reading_its_answers_stops_being_read_and_is_ended(
    new_gatehouse: Callable[..., Gatehouse],
) -> None:
    """Every PINGREQ (or PUBREL, SUBSCRIBE ...) is handled in a task that writes its
    answer; the reader used to start them without end for a client reading none."""
    server = new_gatehouse(None, "--allow-anonymous")
    sock, echo = _client(server, keepalive=1)
    _stop_reading(server, sock, echo)
    sock.sendall(PINGREQ * 200)  # more than the broker handles at once per connection
    # The client keeps sending PINGREQs within its keepalive, but the broker has stopped
    # reading them; 1.5 x keepalive after the last packet it read, it ends the client.
    deadline = time.monotonic() + 2 * TIMEOUT
    while "wait to be answered while it reads nothing" not in server.log():
        assert time.monotonic() < deadline, "the broker read on without answering"
        try:
            sock.sendall(PINGREQ)
        except OSError:
            break  # ended already
        time.sleep(0.25)  # the pace of the keepalive (1 s) the client keeps up
    _kinds_until_closed(sock)
    sock.close()
    assert eventually(lambda: "wait to be answered while it reads nothing" in server.log())


def _persistent_connect(server: Gatehouse, client_id: str) -> socket.socket:
    body = field("MQTT") + bytes([4, 0]) + struct.pack("!H", 60) + field(client_id)
    sock = socket.create_connection(("127.0.0.1", server.mqtt_port), timeout=TIMEOUT)
    sock.sendall(bytes([0x10, len(body)]) + body)
    connack = read_packet(sock, time.monotonic() + TIMEOUT)
    assert connack is not None and connack[0] == CONNACK and connack[1][1] == 0, connack
    return sock


def test_a_puback_goes_only_on_the_connection_that_read_the_publish(
    new_gatehouse: Callable[..., Gatehouse],
) -> None:
    """QoS 1 PUBLISHes left in a persistent session's queue when its connection ends are
    handled by the next connection; it used to PUBACK their old packet ids, which could
    acknowledge a new message reusing an id before it was stored."""
    server = new_gatehouse(None, "--allow-anonymous")
    watcher, topic = _client(server)  # sees the left-over PUBLISHes being routed
    client_id = unique("bounds-ack")
    first = _persistent_connect(server, client_id)
    # A PUBLISH to a `$` topic ends the connection in its consumer: what follows stays
    # queued in the session.
    left_over = [publish_packet(topic, b"%d" % i, 1, i) for i in range(1, 6)]
    first.sendall(publish_packet("$bounds/x", b"x", 1, 100) + b"".join(left_over))
    assert PUBACK not in _kinds_until_closed(first)
    first.close()
    second = _persistent_connect(server, client_id)
    for _ in left_over:  # the next connection routes them ...
        packet = read_packet(watcher, time.monotonic() + TIMEOUT)
        assert packet is not None and packet[0] == PUBLISH, packet
    second.sendall(PINGREQ)
    # ... but acknowledges none of them: the client resends them itself.
    assert read_packet(second, time.monotonic() + TIMEOUT) == (PINGRESP, b"")
    second.close()
    watcher.close()
