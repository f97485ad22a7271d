"""Hand-built MQTT 3.1.1 packets over a plain socket, for inputs real client libraries
refuse to send (malformed filters and the like)."""

from __future__ import annotations

import socket
import struct


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
