"""amqtt's per-connection protocol handler, with keepalive enforced and QoS 1 kept until acked.

Pinned to amqtt 0.12.1: the overrides below replace methods of `BrokerProtocolHandler`
and `ProtocolHandler` whose behaviour is described in each docstring.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from amqtt.adapters import ReaderAdapter, WriterAdapter
from amqtt.errors import MQTTError, NoDataError
from amqtt.events import MQTTEvents
from amqtt.mqtt.connack import (
    BAD_USERNAME_PASSWORD,
    IDENTIFIER_REJECTED,
    UNACCEPTABLE_PROTOCOL_VERSION,
    ConnackPacket,
)
from amqtt.mqtt.constants import QOS_1, QOS_2
from amqtt.mqtt.disconnect import DisconnectPacket
from amqtt.mqtt.packet import MQTTPacket
from amqtt.mqtt.pingreq import PingReqPacket
from amqtt.mqtt.protocol.broker_handler import (
    Subscription,
    UnSubscription,
)
from amqtt.mqtt.puback import PubackPacket
from amqtt.mqtt.pubcomp import PubcompPacket
from amqtt.mqtt.publish import PublishPacket
from amqtt.mqtt.pubrec import PubrecPacket
from amqtt.mqtt.pubrel import PubrelPacket
from amqtt.mqtt.subscribe import SubscribePacket
from amqtt.mqtt.unsubscribe import UnsubscribePacket
from amqtt.plugins.manager import PluginManager
from amqtt.session import (
    OUTGOING,
    IncomingApplicationMessage,
    OutgoingApplicationMessage,
    Session,
)

from broker.core.flows import ResumableFlows
from broker.core.packets import Malformed, decode, read_body, read_connect, read_header
from broker.core.session import GatehouseSession

log = logging.getLogger("gatehouse.mqtt")

# MQTT 3.1.1, 3.1.2.10: a server disconnects a client silent for 1.5 x its keepalive.
KEEPALIVE_GRACE = 1.5
# Bytes a second a packet being read must at least arrive at (see `_reader_loop`).
MIN_PACKET_RATE = 8 * 1024
MQTT_311 = 4
ACK_HIGH_WATER = 1 << 20  # bytes waiting on a socket before a PUBACK waits its turn
# Packets of one connection being handled at once (each a task; most wait only to write
# their answer). Past it the reader reads nothing more until the oldest is done.
MAX_HANDLING = 100


class Unread(Exception):
    """A client has not read its socket for 1.5 x keepalive while packets of its wait to
    be answered: its reader has stopped reading."""


# Why a connection ended, as its offline event and lifecycle message say it.
DISCONNECTED = "disconnected"  # the client sent DISCONNECT
CONNECTION_LOST = "connection lost"  # the socket closed (or broke) without DISCONNECT
KEEPALIVE_TIMEOUT = "keepalive timeout"  # no complete packet within 1.5 x keepalive
PROTOCOL_ERROR = "protocol error"  # a malformed packet, or one the client may not send
OVERLOADED = "publishing faster than it is served"  # a bound of `CoreLimits` was reached
TAKEN_OVER = "logged in again"  # the same client id connected elsewhere
SHUTTING_DOWN = "server shutting down"
SERVER_ERROR = "server error"  # handling one of its PUBLISHes failed (logged)
ENDED_BY_PLATFORM = "ended by the platform"  # the service ended it (a device revoked ...)


class ReceivedQoS1(IncomingApplicationMessage):
    """An incoming QoS 1 message and the connection that read it: its PUBACK goes there
    only. (Left in a persistent session's queue when that connection ended, it is
    handled by the next one, which must not PUBACK an id the client may have reused.)"""

    __slots__ = ("connection",)

    def __init__(self, packet: PublishPacket, connection: GatehouseHandler) -> None:
        topic, data = packet.topic_name or "", bytes(packet.data or b"")
        super().__init__(packet.packet_id, topic, QOS_1, data, packet.retain_flag)
        self.connection = connection


def _refusal(connect: Any) -> tuple[int, str] | None:
    """The CONNACK code refusing a well-formed CONNECT before authentication, and why."""
    if connect.proto_level != MQTT_311:
        return UNACCEPTABLE_PROTOCOL_VERSION, f"protocol level {connect.proto_level}, not 4"
    if not connect.username_flag and connect.password_flag:
        return BAD_USERNAME_PASSWORD, "[MQTT-3.1.2-22] a password without a username"
    if connect.username_flag and connect.username is None:
        return BAD_USERNAME_PASSWORD, "username flag set without a username"
    if connect.password_flag and connect.password is None:
        return BAD_USERNAME_PASSWORD, "password flag set without a password"
    if not connect.clean_session_flag and connect.payload.client_id_is_random:
        return IDENTIFIER_REJECTED, "[MQTT-3.1.3-8] a persistent session needs a client id"
    return None


class GatehouseHandler(ResumableFlows):  # QoS 2 and resumption: broker/core/flows.py
    """One client connection. Also carries the connection's end, for session take-over."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.finished = asyncio.Event()  # set when the broker is done with this connection
        self.inbound_drops = 0  # QoS 0 PUBLISHes dropped because the inbound queue was full
        self.outbound: set[asyncio.Future[Any]] = set()  # QoS 1/2 deliveries awaiting ack
        # PUBLISHes handled but waiting to be stored before they are answered and
        # acknowledged, oldest first (MQTT 3.1.1, 4.6: PUBACKs go out in order), and
        # the task that works through them while there are any.
        self.unacked: collections.deque[tuple[IncomingApplicationMessage, Any]] = (
            collections.deque()
        )
        self.acker: asyncio.Task[None] | None = None
        self.unacked_room = asyncio.Event()
        self.max_read = 1 << 30  # set by the broker from CoreLimits.max_packet
        self._end_reason: str | None = None  # the first reason given for ending it
        self._last_packet = 0.0  # loop time at which the last complete packet arrived
        # Set by the broker: SUBSCRIBE and UNSUBSCRIBE are handled in the task amqtt's
        # reader starts per packet, instead of two more queues and tasks per connection.
        self.on_subscribe: Callable[[Subscription], Awaitable[None]] | None = None
        self.on_unsubscribe: Callable[[UnSubscription], Awaitable[None]] | None = None

    @classmethod
    async def init_from_connect(
        cls,
        reader: ReaderAdapter,
        writer: WriterAdapter,
        plugins_manager: PluginManager[Any],
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> tuple[GatehouseHandler, Session]:
        """Read and check CONNECT, into a `GatehouseSession`.

        amqtt's builds a state machine per client, the largest CPU and memory cost of a
        connection. And (issue 14, item 14) it read a CONNECT of any size field by
        field: 1,000 half-sent CONNECTs of 192 KB held 227 MB before any login. Here
        the CONNECT is bounded (`packets.MAX_CONNECT`) before it is read, read whole,
        and checked strictly (`packets.check_connect`).
        """
        try:
            connect = await read_connect(reader)
        except Malformed as exc:
            raise MQTTError(str(exc)) from None
        await plugins_manager.fire_event(MQTTEvents.PACKET_RECEIVED, packet=connect)
        header, payload = connect.variable_header, connect.payload
        if header is None or payload is None or payload.client_id is None:
            raise MQTTError("[MQTT-3.1.3-3] CONNECT without a client identifier")
        if connect.will_flag and (connect.will_topic is None or connect.will_message is None):
            raise MQTTError("will flag set, but no will topic or message")
        if header.reserved_flag:
            raise MQTTError("[MQTT-3.1.2-3] CONNECT reserved flag must be 0")
        if connect.proto_name != "MQTT":
            raise MQTTError(f"[MQTT-3.1.2-1] protocol name {connect.proto_name!r}")
        refusal = _refusal(connect)
        if refusal is not None:
            await ConnackPacket.build(0, refusal[0]).to_stream(writer)
            await writer.close()
            raise MQTTError(refusal[1])
        session = GatehouseSession()
        session.client_id = connect.client_id
        session.clean_session = connect.clean_session_flag
        session.will_flag = connect.will_flag
        session.will_retain = connect.will_retain_flag
        session.will_qos = connect.will_qos
        session.will_topic = connect.will_topic
        session.will_message = connect.will_message
        session.username = connect.username
        session.password = connect.password
        session.remote_address, session.remote_port = writer.get_peer_info() or (None, None)
        session.ssl_object = writer.get_ssl_info()
        session.keep_alive = max(connect.keep_alive, 0)
        return cls(plugins_manager, loop=loop), session

    async def handle_subscribe(self, subscribe: SubscribePacket) -> None:
        if self.on_subscribe is None:
            await super().handle_subscribe(subscribe)
        elif subscribe.variable_header is not None and subscribe.payload is not None:
            request = Subscription(subscribe.variable_header.packet_id, subscribe.payload.topics)
            await self.on_subscribe(request)

    async def handle_unsubscribe(self, unsubscribe: UnsubscribePacket) -> None:
        if self.on_unsubscribe is None:
            await super().handle_unsubscribe(unsubscribe)
        elif unsubscribe.variable_header is not None and unsubscribe.payload is not None:
            header, payload = unsubscribe.variable_header, unsubscribe.payload
            await self.on_unsubscribe(UnSubscription(header.packet_id, payload.topics))

    async def handle_publish(self, publish_packet: PublishPacket) -> None:
        """Bound what one connection can have read but not yet routed (`max_inbound`),
        and the QoS 2 flows its session can have open.

        amqtt would drop QoS 0 on a full queue but block QoS 1/2 in a task per packet
        while the reader goes on reading: unbounded; and it kept each QoS 2 flow open
        until PUBREL, with no bound at all. Here QoS 1/2 on a full queue, or a QoS 2
        PUBLISH past `max_inbound` open flows, ends the connection before it is
        acknowledged, so the client resends after reconnecting (and PUBRELs first).
        """
        session = self.session
        if session is None:
            return
        qos = publish_packet.qos
        if qos == QOS_2 and (known := self.repeated_qos2(publish_packet)) is not None:
            # The same message again (flows.py): not handled twice, and nothing waits
            # holding its payload; a decided one gets its PUBREC again only if the
            # client reads its socket.
            pubrec = known.pubrec_packet
            if pubrec is not None and not self.write_now(bytes(pubrec.to_bytes()), ACK_HIGH_WATER):
                log.warning(
                    "%s: a QoS 2 PUBLISH again while it reads nothing; disconnecting",
                    session.client_id,
                )
                self.abort(OVERLOADED)
            return
        queue_full = session.delivered_message_queue.full()
        if queue_full or (qos == QOS_2 and self.qos2_full()):
            if not qos:
                self.inbound_drops += 1
            elif queue_full:
                log.warning(
                    "%s: publishing faster than it is routed; disconnecting", session.client_id
                )
                self.abort(OVERLOADED)
            else:
                log.warning(
                    "%s: a QoS 2 PUBLISH with %d flows open without PUBREL; disconnecting",
                    session.client_id,
                    len(session.inflight_in),
                )
                self.abort(OVERLOADED)
            return
        if qos == QOS_2:
            self.receive_qos2(publish_packet)
            return
        if qos == QOS_1:
            message = ReceivedQoS1(publish_packet, self)
            message.publish_packet = publish_packet
            session.delivered_message_queue.put_nowait(message)
            return
        await super().handle_publish(publish_packet)

    def abort(self, reason: str = ENDED_BY_PLATFORM) -> None:
        """End the connection as abnormal: the broker sends the will and closes the socket."""
        self._ended_because(reason)
        if self._disconnect_waiter is not None and not self._disconnect_waiter.done():
            self._disconnect_waiter.set_result(None)

    async def handle_disconnect(self, disconnect: DisconnectPacket | None) -> None:
        if disconnect is not None:
            self._ended_because(DISCONNECTED)  # it said goodbye, whatever ends it after
        await super().handle_disconnect(disconnect)

    def _ended_because(self, reason: str) -> None:
        if self._end_reason is None:
            self._end_reason = reason

    @property
    def end_reason(self) -> str:
        """Why the connection ended (or is ending): the first reason given, else whether
        the client said goodbye."""
        if self._end_reason is not None:
            return self._end_reason
        return DISCONNECTED if self.farewell is not None else CONNECTION_LOST

    # Defect 1 (upstream #308) and issue 14, items 7 and 8.
    async def _reader_loop(self) -> None:
        """Read, check and dispatch the client's packets until the connection ends.

        Replaces amqtt's loop, which timed out only the wait for a fixed header and
        then did nothing (keepalive was not enforced, and a client that sent part of a
        packet and then nothing held its connection for ever); which decoded packets
        field by field off the socket and, on a bad field, logged "Message discarded"
        and read on from the middle of the packet, so the payload of a PUBLISH to
        `a/+` was parsed as further packets; and which let invalid UTF-8 and U+0000
        through. Here each packet is read whole and decoded strictly
        (`packets.decode`); a malformed packet, one over `max_read` bytes or one a
        client may not send ends the connection as abnormal (the will is sent), and
        nothing of it is handled.

        Keepalive (MQTT 3.1.1, 3.1.2.10) counts complete packets only. The connection
        ends when no packet has been completed for 1.5 x keepalive, plus one second
        per `MIN_PACKET_RATE` bytes of the packet being read: a large packet arriving
        slowly but steadily is read whole, while a stalled one (or one trickling in
        below that rate) is cut off, so part of a packet holds a connection for a
        bounded time whatever size it announces. Keepalive 0 turns the check off.
        """
        assert self.session is not None and self.reader is not None
        client_id = self.session.client_id
        running: collections.deque[asyncio.Task[None]] = collections.deque()
        self._last_packet = self._loop.time()
        self._reader_ready.set()
        try:
            while True:
                while running and running[0].done():
                    running.popleft()
                if len(running) >= MAX_HANDLING:
                    await self._wait_for_room(running[0])
                if (packet := await self._read_packet()) is None:
                    break
                await self.plugins_manager.fire_event(
                    MQTTEvents.PACKET_RECEIVED, packet=packet, session=self.session
                )
                running.append(asyncio.create_task(self._handle_packet(packet)))
        except Unread:
            self._ended_because(OVERLOADED)
            log.warning(
                "%s: %d packets wait to be answered while it reads nothing; disconnecting",
                client_id,
                len(running),
            )
        except Malformed as exc:
            self._ended_because(PROTOCOL_ERROR)
            log.info("%s sent a malformed packet (%s): disconnecting", client_id, exc)
        except TimeoutError:
            self._ended_because(KEEPALIVE_TIMEOUT)
            log.info(
                "%s completed no packet in %.1f s (keepalive %d s): disconnecting",
                client_id,
                self._loop.time() - self._last_packet,
                self.session.keep_alive,
            )
        except (NoDataError, asyncio.CancelledError):
            pass  # closed inside a packet, or stopped by the broker
        except Exception as exc:
            log.warning("%s: reading its packets failed: %r", client_id, exc)
        while running:
            running.popleft().cancel()
        await self.handle_connection_closed()
        self._reader_stopped.set()
        await self.stop()

    async def _wait_for_room(self, oldest: asyncio.Task[None]) -> None:
        """Backpressure: wait for the oldest packet being handled, at most until the
        keepalive deadline (a client that reads nothing of its socket, while its answers
        wait to be written, is ended: `Unread`)."""
        assert self.session is not None
        keep_alive = self.session.keep_alive
        timeout = None
        if keep_alive > 0:
            deadline = self._last_packet + keep_alive * KEEPALIVE_GRACE
            timeout = max(deadline - self._loop.time(), 0.0)
        done, _pending = await asyncio.wait([oldest], timeout=timeout)
        if not done:
            raise Unread

    async def _read_packet(self) -> MQTTPacket[Any, Any, Any] | None:
        """The client's next packet, whole; None at the end of the stream."""
        assert self.session is not None and self.reader is not None
        keep_alive = self.session.keep_alive
        deadline = None
        if keep_alive > 0:
            deadline = self._last_packet + keep_alive * KEEPALIVE_GRACE
        async with asyncio.timeout_at(deadline) as timeout:
            header = await read_header(self.reader)
            if header is None:
                return None
            if deadline is not None:
                timeout.reschedule(deadline + header.remaining_length / MIN_PACKET_RATE)
            body = await read_body(self.reader, header, self.max_read)
        self._last_packet = self._loop.time()
        return decode(header, body)

    async def _handle_packet(self, packet: MQTTPacket[Any, Any, Any]) -> None:
        if isinstance(packet, PublishPacket):
            await self.handle_publish(packet)
        elif isinstance(packet, PubackPacket):
            await self.handle_puback(packet)
        elif isinstance(packet, PubrecPacket):
            await self.handle_pubrec(packet)
        elif isinstance(packet, PubrelPacket):
            await self.handle_pubrel(packet)
        elif isinstance(packet, PubcompPacket):
            await self.handle_pubcomp(packet)
        elif isinstance(packet, SubscribePacket):
            await self.handle_subscribe(packet)
        elif isinstance(packet, UnsubscribePacket):
            await self.handle_unsubscribe(packet)
        elif isinstance(packet, PingReqPacket):
            await self.handle_pingreq(packet)
        elif isinstance(packet, DisconnectPacket):
            await self.handle_disconnect(packet)

    def _transport(self) -> Any:
        # uvloop's transports are no `asyncio.WriteTransport`: duck-typed.
        return getattr(getattr(self.writer, "_writer", None), "transport", None)

    async def stop(self) -> None:
        """amqtt's, which first waits for the socket to drain: a client that is not
        reading would hold it for ever. What such a client has not read is dropped."""
        transport = self._transport()
        if transport is not None and transport.get_write_buffer_size() > ACK_HIGH_WATER:
            transport.abort()
        await super().stop()

    def write_now(self, data: bytes, high_water: int) -> bool:
        """Write a complete packet without waiting; False if the client is not keeping up.

        A whole packet goes out in one write, so it cannot interleave with packets
        written by amqtt's own flows.
        """
        transport = self._transport()
        if self.writer is None or transport is None or transport.is_closing():
            return False
        if transport.get_write_buffer_size() > high_water:
            return False
        transport.write(data)
        return True

    # Defect 7: amqtt drops an unacknowledged QoS 1 message from the session when the
    # connection ends or after 5 s, so a persistent session never gets it again. Here
    # it stays in flight until PUBACK and is resent (DUP) when the client comes back.
    async def _handle_qos1_message_flow(
        self, app_message: OutgoingApplicationMessage | IncomingApplicationMessage
    ) -> None:
        if isinstance(app_message, IncomingApplicationMessage):
            # Defect 8: amqtt sent PUBACK as soon as the PUBLISH was queued, before
            # anything was done with it. The broker acknowledges it (`acknowledge`) once
            # the service says the message is stored.
            if self.session is not None:
                await self.session.delivered_message_queue.put(app_message)
            return
        if app_message.direction != OUTGOING or not isinstance(
            app_message, OutgoingApplicationMessage
        ):
            await super()._handle_qos1_message_flow(app_message)
            return
        if self.session is None or app_message.packet_id is None:
            return
        packet_id = app_message.packet_id
        self.session.inflight_out[packet_id] = app_message
        retry = app_message.publish_packet is not None
        packet: PublishPacket = app_message.build_publish_packet(dup=retry)
        waiter: asyncio.Future[PubackPacket] = self._loop.create_future()
        self._puback_waiters[packet_id] = waiter
        try:
            # One write straight onto the socket, as for QoS 0, unless the client is
            # leaving (then `_send_packet` refuses it, and it stays unsent: no DUP later)
            # or not reading (then it waits its turn).
            if self.is_leaving or not self.write_now(bytes(packet.to_bytes()), ACK_HIGH_WATER):
                await self._send_packet(packet)
            app_message.publish_packet = packet
            app_message.puback_packet = await waiter
            self.session.inflight_out.pop(packet_id, None)
        finally:
            self._puback_waiters.pop(packet_id, None)

    async def acknowledge(self, message: IncomingApplicationMessage) -> None:
        """PUBACK a QoS 1 PUBLISH the broker is done with, on the connection that read it
        only (a gone client gets none)."""
        if message.packet_id is None or message.puback_packet is not None:
            return
        if not isinstance(message, ReceivedQoS1) or message.connection is not self:
            return
        puback = PubackPacket.build(message.packet_id)
        if await self.write_ack(puback):
            message.puback_packet = puback

    async def write_ack(self, packet: MQTTPacket[Any, Any, Any]) -> bool:
        """Straight onto the socket, as one write (it cannot split another packet): the
        stream writer's lock, drain and per-packet plugin event cost more than the
        four bytes. A client not reading its socket gets it the slow way."""
        if self.write_now(bytes(packet.to_bytes()), ACK_HIGH_WATER):
            return True
        return await super().write_ack(packet)
