"""Reading a client's packets whole and decoding them strictly (MQTT 3.1.1).

amqtt 0.12.1 decodes a packet field by field straight off the socket. When a field is
bad (a wildcard in a PUBLISH topic) it raises with the rest of the packet unread, and
its reader loop carries on from there, parsing the payload as further packets. It also
decodes invalid UTF-8 as the text `b'...'` and accepts U+0000 anywhere.

Here the fixed header is read, the remaining length checked against a bound, and the
body read in one piece; the packet is then decoded from memory, so nothing a client
sends can desynchronise the stream. `Malformed` names the rule a packet breaks; MQTT
3.1.1 says the server closes the connection for each of them (4.8.0-1).
"""

from __future__ import annotations

import struct
from typing import Any

from amqtt.adapters import ReaderAdapter
from amqtt.codecs_amqtt import read_or_raise
from amqtt.errors import MQTTError, NoDataError
from amqtt.mqtt.connect import ConnectPacket
from amqtt.mqtt.disconnect import DisconnectPacket
from amqtt.mqtt.packet import (
    CONNECT,
    DISCONNECT,
    PINGREQ,
    PUBACK,
    PUBCOMP,
    PUBLISH,
    PUBREC,
    PUBREL,
    SUBSCRIBE,
    UNSUBSCRIBE,
    MQTTFixedHeader,
    MQTTPacket,
    PacketIdVariableHeader,
)
from amqtt.mqtt.pingreq import PingReqPacket
from amqtt.mqtt.puback import PubackPacket
from amqtt.mqtt.pubcomp import PubcompPacket
from amqtt.mqtt.publish import PublishPacket, PublishPayload, PublishVariableHeader
from amqtt.mqtt.pubrec import PubrecPacket
from amqtt.mqtt.pubrel import PubrelPacket
from amqtt.mqtt.subscribe import SubscribePacket, SubscribePayload
from amqtt.mqtt.unsubscribe import UnsubscribePacket, UnubscribePayload

# The largest CONNECT read: a will message up to MQTT's own bound (a two-byte length),
# plus room for the client id, username, password and will topic.
CONNECT_FIELDS = 8 * 1024
MAX_CONNECT = 65_535 + CONNECT_FIELDS

# [MQTT-2.2.2-1], [MQTT-2.2.2-2]: the fixed-header flags of each packet a client may send
# once connected (PUBLISH carries its own flags).
_FLAGS = {
    PUBACK: 0,
    PUBREC: 0,
    PUBREL: 2,
    PUBCOMP: 0,
    SUBSCRIBE: 2,
    UNSUBSCRIBE: 2,
    PINGREQ: 0,
    DISCONNECT: 0,
}
_ACKS: dict[int, type[PubackPacket | PubrecPacket | PubrelPacket | PubcompPacket]] = {
    PUBACK: PubackPacket,
    PUBREC: PubrecPacket,
    PUBREL: PubrelPacket,
    PUBCOMP: PubcompPacket,
}


class Malformed(Exception):
    """A packet the server must close the connection for; the message names the rule."""


class _Fields:
    """A packet body read from the front, each field checked as MQTT 3.1.1 defines it."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.at = 0

    def left(self) -> int:
        return len(self.body) - self.at

    def take(self, n: int) -> bytes:
        if n > self.left():
            raise Malformed("the packet ends inside a field")
        data = self.body[self.at : self.at + n]
        self.at += n
        return data

    def byte(self) -> int:
        return self.take(1)[0]

    def uint16(self) -> int:
        value: int = struct.unpack("!H", self.take(2))[0]
        return value

    def packet_id(self) -> int:
        packet_id = self.uint16()
        if packet_id == 0:
            raise Malformed("[MQTT-2.3.1-1] packet identifier 0")
        return packet_id

    def binary(self) -> bytes:
        return self.take(self.uint16())

    def text(self, what: str) -> str:
        try:
            text = self.binary().decode("utf-8")  # strict: rejects surrogates too
        except UnicodeDecodeError:
            raise Malformed(f"[MQTT-1.5.3-1] {what} is not valid UTF-8") from None
        if "\x00" in text:
            raise Malformed(f"[MQTT-1.5.3-2] {what} contains U+0000")
        return text

    def end(self) -> None:
        if self.left():
            raise Malformed(f"{self.left()} bytes after the packet's last field")


def check_topic_name(topic: str, what: str = "topic") -> None:
    if not topic:
        raise Malformed(f"[MQTT-4.7.3-1] an empty {what}")
    if "+" in topic or "#" in topic:
        raise Malformed(f"[MQTT-3.3.2-2] wildcards in the {what} {topic!r}")


async def read_body(reader: ReaderAdapter, header: MQTTFixedHeader, limit: int) -> bytes:
    """The body the fixed header announces, refused unread when over `limit` bytes."""
    size = header.remaining_length
    if size > limit:
        raise Malformed(f"a packet of {size} bytes; the limit is {limit}")
    return await read_or_raise(reader, size) if size else b""


async def read_header(reader: ReaderAdapter) -> MQTTFixedHeader | None:
    """The next fixed header, or None at end of stream."""
    try:
        return await MQTTFixedHeader.from_stream(reader)
    except MQTTError as exc:  # a remaining length of more than four bytes
        raise Malformed(str(exc)) from None


def decode(header: MQTTFixedHeader, body: bytes) -> MQTTPacket[Any, Any, Any]:
    """The packet a connected client sent, from its complete body; Malformed if bad."""
    kind = header.packet_type
    if kind == PUBLISH:
        return _publish(header, _Fields(body))
    if kind not in _FLAGS:
        raise Malformed(f"packet type {kind}, which a client may not send here")
    if header.flags != _FLAGS[kind]:
        raise Malformed(f"[MQTT-2.2.2-2] flags {header.flags:#x} on packet type {kind}")
    fields = _Fields(body)
    packet: MQTTPacket[Any, Any, Any]
    if kind in _ACKS:
        packet = _ACKS[kind](header, PacketIdVariableHeader(fields.uint16()))
    elif kind == SUBSCRIBE:
        packet = _subscribe(header, fields)
    elif kind == UNSUBSCRIBE:
        packet = _unsubscribe(header, fields)
    elif kind == PINGREQ:
        packet = PingReqPacket(header)
    else:
        packet = DisconnectPacket(header)
    fields.end()
    return packet


def _publish(header: MQTTFixedHeader, fields: _Fields) -> PublishPacket:
    qos = (header.flags >> 1) & 0x03
    if qos == 3:
        raise Malformed("[MQTT-3.3.1-4] a PUBLISH with QoS 3")
    topic = fields.text("the topic")
    check_topic_name(topic)
    packet_id = fields.packet_id() if qos else None
    payload = fields.take(fields.left())
    return PublishPacket(header, PublishVariableHeader(topic, packet_id), PublishPayload(payload))


def _subscribe(header: MQTTFixedHeader, fields: _Fields) -> SubscribePacket:
    packet_id = fields.packet_id()
    topics: list[tuple[str, int]] = []
    while fields.left():
        topic_filter = fields.text("a topic filter")
        qos = fields.byte()
        if qos > 2:  # reserved bits set, or QoS 3
            raise Malformed(f"[MQTT-3.8.3-4] requested QoS byte {qos:#x}")
        topics.append((topic_filter, qos))
    if not topics:
        raise Malformed("[MQTT-3.8.3-3] a SUBSCRIBE without a topic filter")
    return SubscribePacket(header, PacketIdVariableHeader(packet_id), SubscribePayload(topics))


def _unsubscribe(header: MQTTFixedHeader, fields: _Fields) -> UnsubscribePacket:
    packet_id = fields.packet_id()
    topics: list[str] = []
    while fields.left():
        topics.append(fields.text("a topic filter"))
    if not topics:
        raise Malformed("[MQTT-3.10.3-2] an UNSUBSCRIBE without a topic filter")
    return UnsubscribePacket(header, PacketIdVariableHeader(packet_id), UnubscribePayload(topics))


def check_connect(header: MQTTFixedHeader, body: bytes) -> None:
    """The checks of MQTT 3.1.1 on a CONNECT that amqtt's decoder leaves out.

    A protocol other than MQTT 3.1.1 is left to amqtt's decoding and the CONNACK that
    refuses it.
    """
    if header.packet_type != CONNECT:
        raise Malformed(f"[MQTT-3.1.0-1] the first packet is of type {header.packet_type}")
    if header.flags:
        raise Malformed(f"[MQTT-2.2.2-2] flags {header.flags:#x} on CONNECT")
    fields = _Fields(body)
    if fields.text("the protocol name") != "MQTT" or fields.byte() != 4:
        return
    flags = fields.byte()
    fields.uint16()  # keepalive
    will, will_qos, will_retain = flags & 0x04, (flags >> 3) & 0x03, flags & 0x20
    if not will and will_qos:
        raise Malformed("[MQTT-3.1.2-13] will QoS without the will flag")
    if not will and will_retain:
        raise Malformed("[MQTT-3.1.2-15] will retain without the will flag")
    if will_qos == 3:
        raise Malformed("[MQTT-3.1.2-14] will QoS 3")
    fields.text("the client id")
    if will:
        check_topic_name(fields.text("the will topic"), "will topic")
        fields.binary()  # the will message: any bytes
    if flags & 0x80:
        fields.text("the username")
    if flags & 0x40:
        fields.binary()  # the password: any bytes
    fields.end()


class _Memory:
    """A packet body already read, for amqtt's decoders (a `ReaderAdapter` to them)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    async def read(self, n: int = -1) -> bytes:
        end = len(self.data) if n < 0 else self.at + n
        chunk = self.data[self.at : end]
        self.at += len(chunk)
        return chunk

    def feed_eof(self) -> None:
        pass


async def read_connect(reader: ReaderAdapter, limit: int = MAX_CONNECT) -> ConnectPacket:
    """The first packet of a connection: a CONNECT of at most `limit` bytes, checked.

    The body is read whole before it is decoded, so a CONNECT over the limit is
    refused before it takes memory, and one with a bad field cannot leave half of
    itself in the stream.
    """
    header = await read_header(reader)
    if header is None:
        raise Malformed("the connection closed before CONNECT")
    if header.packet_type != CONNECT:
        raise Malformed(f"[MQTT-3.1.0-1] the first packet is of type {header.packet_type}")
    try:
        body = await read_body(reader, header, limit)
    except NoDataError:
        raise Malformed("the connection closed inside CONNECT") from None
    check_connect(header, body)
    try:
        return await ConnectPacket.from_stream(_Memory(body), fixed_header=header)
    except (MQTTError, ValueError) as exc:
        raise Malformed(f"an undecodable CONNECT: {exc}") from None
