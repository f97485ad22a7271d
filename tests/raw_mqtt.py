"""Hand-built MQTT 3.1.1 packets over a plain socket, for inputs real client libraries
refuse to send (malformed filters and the like)."""

from __future__ import annotations

import socket
import struct
import time


def _length(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("!H", len(data)) + data


def _packet(first_byte: int, body: bytes) -> bytes:
    return bytes([first_byte]) + _length(len(body)) + body


class RawClient:
    def __init__(self, port: int, client_id: str, username: str | None = None) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        flags = 0x02 | (0x80 if username is not None else 0)
        body = _string("MQTT") + bytes([4, flags]) + struct.pack("!H", 60) + _string(client_id)
        if username is not None:
            body += _string(username)
        self.sock.sendall(_packet(0x10, body))
        connack = self._read(4)
        self.connack = connack[3]

    def _read(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("the broker closed the connection")
            data += chunk
        return data

    def subscribe(self, filters: list[tuple[str, int]], packet_id: int = 1) -> list[int]:
        """Send one SUBSCRIBE as given, unchecked; return the SUBACK codes."""
        body = struct.pack("!H", packet_id) + b"".join(
            _string(topic) + bytes([qos]) for topic, qos in filters
        )
        self.sock.sendall(_packet(0x82, body))
        while True:  # skip any PUBLISH the broker sends first
            kind, payload = self._next_packet()
            if kind == 0x90:
                assert struct.unpack("!H", payload[:2])[0] == packet_id
                return list(payload[2:])

    def _next_packet(self) -> tuple[int, bytes]:
        first = self._read(1)[0]
        length, shift = 0, 0
        while True:
            digit = self._read(1)[0]
            length += (digit & 0x7F) << shift
            shift += 7
            if not digit & 0x80:
                break
        return first & 0xF0, self._read(length)

    def close(self) -> None:
        self.sock.sendall(b"\xe0\x00")  # DISCONNECT
        self.sock.close()


# -- building and reading packets one at a time, for protocol violations ---------------


def field(data: bytes | str) -> bytes:
    """A length-prefixed MQTT field; bytes are sent as they are (invalid UTF-8 too)."""
    raw = data.encode() if isinstance(data, str) else data
    return struct.pack("!H", len(raw)) + raw


def connect_packet(
    client_id: str,
    *,
    username: str | None = None,
    password: str | None = None,
    keepalive: int = 60,
    will: tuple[bytes | str, bytes] | None = None,
    extra_flags: int = 0,
) -> bytes:
    """A CONNECT (clean session); `extra_flags` are OR-ed in unchecked (will QoS, retain)."""
    flags = 0x02 | extra_flags
    payload = field(client_id)
    if will is not None:
        flags |= 0x04
        payload += field(will[0]) + field(will[1])
    if username is not None:
        flags |= 0x80
        payload += field(username)
    if password is not None:
        flags |= 0x40
        payload += field(password)
    return _packet(0x10, field("MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive) + payload)


def publish_packet(topic: bytes | str, payload: bytes, qos: int = 0, packet_id: int = 1) -> bytes:
    """A PUBLISH with any topic bytes and any QoS bits (3 included)."""
    body = field(topic) + (struct.pack("!H", packet_id) if qos else b"") + payload
    return _packet(0x30 | (qos << 1), body)


def subscribe_packet(filters: list[tuple[bytes | str, int]], packet_id: int = 1) -> bytes:
    body = struct.pack("!H", packet_id) + b"".join(field(f) + bytes([q]) for f, q in filters)
    return _packet(0x82, body)


def read_packet(sock: socket.socket, deadline: float | None = None) -> tuple[int, bytes] | None:
    """The next packet as (first byte, body), or None at EOF (the server closed).
    Past `deadline` (time.monotonic()) it raises TimeoutError."""

    def exactly(n: int) -> bytes | None:
        data = b""
        while len(data) < n:
            if deadline is not None:
                sock.settimeout(max(deadline - time.monotonic(), 0.001))
            try:
                chunk = sock.recv(n - len(data))
            except ConnectionResetError:
                return None
            if not chunk:
                return None
            data += chunk
        return data

    first = exactly(1)
    if first is None:
        return None
    length, shift = 0, 0
    while True:
        digit = exactly(1)
        if digit is None:
            return None
        length += (digit[0] & 0x7F) << shift
        shift += 7
        if not digit[0] & 0x80:
            break
    body = exactly(length)
    return None if body is None else (first[0], body)


def packets_until_closed(sock: socket.socket, within: float) -> list[tuple[int, bytes]]:
    """Every packet the server sends until it closes the connection, which it must do
    within `within` seconds (else AssertionError)."""
    deadline = time.monotonic() + within
    received: list[tuple[int, bytes]] = []
    try:
        while (packet := read_packet(sock, deadline)) is not None:
            received.append(packet)
    except TimeoutError:
        raise AssertionError(
            f"the server kept the connection open for {within} s; it sent {received}"
        ) from None
    return received
