"""amqtt's per-connection protocol handler, with keepalive enforced and QoS 1 kept until acked.

Pinned to amqtt 0.12.1: the overrides below replace methods of `BrokerProtocolHandler`
and `ProtocolHandler` whose behaviour is described in each docstring.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from amqtt.adapters import ReaderAdapter, WriterAdapter
from amqtt.errors import MQTTError
from amqtt.events import MQTTEvents
from amqtt.mqtt.connack import (
    BAD_USERNAME_PASSWORD,
    IDENTIFIER_REJECTED,
    UNACCEPTABLE_PROTOCOL_VERSION,
    ConnackPacket,
)
from amqtt.mqtt.connect import ConnectPacket
from amqtt.mqtt.protocol.broker_handler import (
    BrokerProtocolHandler,
    Subscription,
    UnSubscription,
)
from amqtt.mqtt.puback import PubackPacket
from amqtt.mqtt.publish import PublishPacket
from amqtt.mqtt.subscribe import SubscribePacket
from amqtt.mqtt.unsubscribe import UnsubscribePacket
from amqtt.plugins.manager import PluginManager
from amqtt.session import (
    OUTGOING,
    IncomingApplicationMessage,
    OutgoingApplicationMessage,
    Session,
)

from broker.core.session import GatehouseSession

log = logging.getLogger("gatehouse.mqtt")

# MQTT 3.1.1, 3.1.2.10: a server disconnects a client silent for 1.5 x its keepalive.
KEEPALIVE_GRACE = 1.5
MQTT_311 = 4


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


class PacketTooLarge(Exception):
    """Ends the connection: amqtt's reader loop stops on an exception it does not know."""


class _ActivityReader(ReaderAdapter):
    """Notes when the client last sent a byte, so keepalive can tell silence from a slow packet."""

    def __init__(
        self, inner: ReaderAdapter, loop: asyncio.AbstractEventLoop, max_read: int
    ) -> None:
        self.inner = inner
        self.loop = loop
        self.max_read = max_read
        self.last_read = loop.time()

    async def read(self, n: int = -1) -> bytes:
        if n > self.max_read or n < 0:
            # amqtt reads a packet body in one call: refuse to buffer an oversized one.
            log.info(
                "a packet of %d bytes is over the limit of %d: disconnecting", n, self.max_read
            )
            raise PacketTooLarge(f"a packet of {n} bytes; the limit is {self.max_read}")
        data: bytes = await self.inner.read(n)
        self.last_read = self.loop.time()
        return data

    def feed_eof(self) -> None:
        self.inner.feed_eof()


class GatehouseHandler(BrokerProtocolHandler):
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
        self._activity: _ActivityReader | None = None
        self.max_read = 1 << 30  # set by the broker from CoreLimits.max_packet
        self._silence_check: asyncio.TimerHandle | None = None
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
        """Read and check CONNECT as amqtt does, into a `GatehouseSession`.

        Overridden for the session class alone: amqtt's builds a state machine per
        client, the largest CPU and memory cost of a connection.
        """
        connect = await ConnectPacket.from_stream(reader)
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

    def attach(self, session: Session, reader: ReaderAdapter, writer: WriterAdapter) -> None:
        self._activity = _ActivityReader(reader, self._loop, self.max_read)
        super().attach(session, reader=self._activity, writer=writer)

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
        """Bound what one connection can have read but not yet routed (`max_inbound`).

        amqtt would drop QoS 0 on a full queue but block QoS 1/2 in a task per packet
        while the reader goes on reading: unbounded. Here QoS 1/2 on a full queue ends
        the connection before PUBACK, so the client resends after reconnecting.
        """
        if self.session is not None and self.session.delivered_message_queue.full():
            if publish_packet.qos:
                log.warning(
                    "%s: publishing faster than it is routed; disconnecting",
                    self.session.client_id,
                )
                self.abort()
            else:
                self.inbound_drops += 1
            return
        await super().handle_publish(publish_packet)

    def abort(self) -> None:
        """End the connection as abnormal: the broker sends the will and closes the socket."""
        if self._disconnect_waiter is not None and not self._disconnect_waiter.done():
            self._disconnect_waiter.set_result(None)

    # Defect 1 (upstream #308): amqtt times out a read after the keepalive and then
    # does nothing. The read timeout fires after 1 x keepalive of silence; the
    # connection ends if the silence reaches 1.5 x.
    def handle_read_timeout(self) -> None:
        if self.session is None or self._activity is None or self.session.keep_alive <= 0:
            return
        if self._silence_check is not None:
            self._silence_check.cancel()
        allowed = self.session.keep_alive * KEEPALIVE_GRACE
        remaining = self._activity.last_read + allowed - self._loop.time()
        self._silence_check = self._loop.call_later(max(remaining, 0), self._end_if_silent)

    def _end_if_silent(self) -> None:
        if self.session is None or self._activity is None:
            return
        allowed = self.session.keep_alive * KEEPALIVE_GRACE
        if self._loop.time() - self._activity.last_read >= allowed - 0.01:
            log.info(
                "%s was silent for %.1f s (keepalive %d s): disconnecting",
                self.session.client_id,
                self._loop.time() - self._activity.last_read,
                self.session.keep_alive,
            )
            self.abort()

    async def stop(self) -> None:
        if self._silence_check is not None:
            self._silence_check.cancel()
        await super().stop()

    def write_now(self, data: bytes, high_water: int) -> bool:
        """Write a complete packet without waiting; False if the client is not keeping up.

        A whole packet goes out in one write, so it cannot interleave with packets
        written by amqtt's own flows.
        """
        writer = self.writer
        transport = getattr(getattr(writer, "_writer", None), "transport", None)
        if writer is None or transport is None or transport.is_closing():
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
            await self._send_packet(packet)
            app_message.publish_packet = packet
            app_message.puback_packet = await waiter
            self.session.inflight_out.pop(packet_id, None)
        finally:
            self._puback_waiters.pop(packet_id, None)

    async def acknowledge(self, message: IncomingApplicationMessage) -> None:
        """PUBACK a QoS 1 PUBLISH the broker is done with (a gone client gets none)."""
        if message.packet_id is None or message.puback_packet is not None:
            return
        puback = PubackPacket.build(message.packet_id)
        with contextlib.suppress(Exception):
            await self._send_packet(puback)
            message.puback_packet = puback
