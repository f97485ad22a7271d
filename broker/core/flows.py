"""QoS 2 flows and session resumption as MQTT 3.1.1, 4.3.3 and 4.4 say, over amqtt 0.12.1.

amqtt dropped an outgoing QoS 2 message 5 s after its PUBLISH, or when the connection
ended, so a persistent session never got it again (MQTT-4.4.0-1). On reconnect it also
ran every incoming QoS 2 flow again, sending a PUBREC the client had not asked for, so
each later reply the client read was one packet late; and a PUBREL for a flow begun
on the previous connection got no PUBCOMP. And a PUBLISH "sent" on a connection that
was already going was marked sent, so it came back with DUP 1 though it never left
(MQTT-3.3.1-1). The mixin below is the base of `GatehouseHandler`.

Incoming QoS 2 (4.3.3, the receiver's "method B"): amqtt sent PUBREC on receipt and
handed the message on only at PUBREL, so a publisher was told "received" before
anything was stored, and a device's reply waited for its PUBREL. Here a PUBLISH with
a new packet id goes to the broker at once, like QoS 1, and is kept in
`session.inflight_in` until PUBREL; the broker answers and stores it, and once the
write commits (`acknowledge_qos2`) the PUBREC goes out, in order with QoS 1 PUBACKs.
Not stored (`release`): no PUBREC, and the id is free again, so the client's resend
is taken as new. A PUBLISH whose id is still in flight is the same message again and
is not handled twice: it gets PUBREC again once one is decided.
"""

from __future__ import annotations

import asyncio
from typing import Any

from amqtt.errors import AMQTTError
from amqtt.mqtt.constants import QOS_2
from amqtt.mqtt.disconnect import DisconnectPacket
from amqtt.mqtt.packet import MQTTPacket
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.mqtt.pubcomp import PubcompPacket
from amqtt.mqtt.publish import PublishPacket
from amqtt.mqtt.pubrec import PubrecPacket
from amqtt.mqtt.pubrel import PubrelPacket
from amqtt.session import ApplicationMessage, IncomingApplicationMessage, OutgoingApplicationMessage


class NotSent(ConnectionError):
    """A PUBLISH was not written: the connection is ending. It stays unsent (DUP 0)."""


class ReceivedQoS2(IncomingApplicationMessage):
    """An incoming QoS 2 message, kept in `session.inflight_in` from PUBLISH to PUBREL.

    `asker` is the connection that sent its PUBLISH last: the one its PUBREC is owed to.
    """

    __slots__ = ("asker",)

    def __init__(
        self, packet_id: int, topic: str, data: bytes, retain: bool, asker: ResumableFlows
    ) -> None:
        super().__init__(packet_id, topic, QOS_2, data, retain)
        self.asker = asker


class ResumableFlows(BrokerProtocolHandler):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Set when the client's DISCONNECT arrived or the connection broke: from then on
        # nothing new is written to it.
        self.leaving = False
        # The client's DISCONNECT, if it sent one: then its will is not published.
        self.farewell: DisconnectPacket | None = None

    @property
    def is_leaving(self) -> bool:
        waiter = self._disconnect_waiter
        return self.leaving or (waiter is not None and waiter.done())

    async def handle_disconnect(self, disconnect: DisconnectPacket | None) -> None:
        if not self.leaving:
            self.farewell = disconnect
        self.leaving = True
        await super().handle_disconnect(disconnect)

    async def _send_packet(self, packet: Any) -> None:
        if isinstance(packet, PublishPacket) and (self.writer is None or self.is_leaving):
            raise NotSent("the connection is ending")
        await super()._send_packet(packet)

    async def stop(self) -> None:
        self.leaving = True
        await super().stop()

    async def _retry_deliveries(self) -> None:
        """Nothing here: the broker resends the session's in-flight messages itself, after
        CONNACK, through its delivery window (`resend`); incoming flows wait for the
        client to resend its PUBLISH or PUBREL [MQTT-4.4.0-1]."""

    def inflight(self) -> list[OutgoingApplicationMessage]:
        """The session's unacknowledged outgoing messages, oldest first."""
        if self.session is None:
            return []
        return list(self.session.inflight_out.values())

    async def resend(self, message: OutgoingApplicationMessage) -> None:
        """Go on with an unacknowledged delivery of a resumed session."""
        await self._handle_message_flow(message)

    async def _handle_qos2_message_flow(
        self, app_message: OutgoingApplicationMessage | IncomingApplicationMessage
    ) -> None:
        if not isinstance(app_message, OutgoingApplicationMessage):
            raise AMQTTError("an incoming QoS 2 PUBLISH is taken by `receive_qos2`")
        await self._deliver_qos2(app_message)

    # -- incoming QoS 2 ------------------------------------------------------------------

    def repeated_qos2(self, packet: PublishPacket) -> ReceivedQoS2 | None:
        """The open flow of a QoS 2 PUBLISH, if it has one: then it is not handled again
        [MQTT-4.3.3-2]. The caller sends its PUBREC again if it was decided
        (`pubrec_packet`); if it is still being stored, the PUBREC goes to this
        connection when the store answers (it is the one asking now)."""
        session, packet_id = self.session, packet.packet_id
        known = None if session is None else session.inflight_in.get(packet_id or 0)
        if not isinstance(known, ReceivedQoS2):
            return None
        known.asker = self
        return known

    def qos2_full(self) -> bool:
        """Whether this session has as many QoS 2 flows open as it may: the bound of its
        inbound queue (`CoreLimits.max_inbound`)."""
        session = self.session
        if session is None:
            return False
        bound = int(session.delivered_message_queue.maxsize)
        return 0 < bound <= len(session.inflight_in)

    def receive_qos2(self, packet: PublishPacket) -> None:
        """Open the flow of a new QoS 2 PUBLISH and hand the message to the broker now;
        the caller has checked that there is room (`qos2_full`, the queue)."""
        if self.session is None or packet.packet_id is None:
            return
        topic, data = packet.topic_name or "", bytes(packet.data or b"")
        message = ReceivedQoS2(packet.packet_id, topic, data, packet.retain_flag, self)
        message.publish_packet = packet
        self.session.inflight_in[packet.packet_id] = message
        self.session.delivered_message_queue.put_nowait(message)

    def decide_qos2(self, message: ApplicationMessage) -> None:
        """A QoS 2 message is stored (or there was nothing to store): from now on its flow
        is decided, whatever happens to the task answering it, so a resend gets PUBREC
        (and is not handled again). Done before anything awaits. The id's record keeps
        no payload until PUBREL."""
        session = self.session
        if not isinstance(message, ReceivedQoS2) or session is None or message.packet_id is None:
            return
        if session.inflight_in.get(message.packet_id) is not message:
            return  # released meanwhile (a PUBREL before its PUBREC)
        receipt = ReceivedQoS2(message.packet_id, message.topic, b"", False, message.asker)
        receipt.pubrec_packet = message.pubrec_packet = PubrecPacket.build(message.packet_id)
        session.inflight_in[message.packet_id] = receipt

    async def acknowledge_qos2(
        self, message: ApplicationMessage, connection: BrokerProtocolHandler | None
    ) -> None:
        """Send the PUBREC of a decided QoS 2 message (`decide_qos2`).

        It goes to `connection`, the session's connection now, if that is the one that
        sent the PUBLISH last and it is not ending: a reconnect may have replaced the
        connection that read it, and a new connection gets its PUBREC when it sends the
        PUBLISH again, never unasked.
        """
        session = self.session
        if session is None or message.packet_id is None or message.pubrec_packet is None:
            return
        receipt = session.inflight_in.get(message.packet_id)
        if not isinstance(receipt, ReceivedQoS2) or (
            receipt.pubrec_packet is not message.pubrec_packet
        ):
            return  # completed meanwhile (a PUBREL before its PUBREC)
        asker = receipt.asker
        asked_here = connection is asker  # (in the `if`, mypy would narrow `asker`'s type)
        if asked_here and not asker.is_leaving:
            await asker.write_ack(message.pubrec_packet)

    def asked_again_on(
        self, message: ApplicationMessage, connection: BrokerProtocolHandler | None
    ) -> bool:
        """Whether an undecided QoS 2 message this connection read was sent again on
        `connection` (the session's connection now, after a take-over): that one waits
        for its PUBREC and will not send it again."""
        session = self.session
        return (
            isinstance(message, ReceivedQoS2)
            and session is not None
            and session.inflight_in.get(message.packet_id or 0) is message
            and message.asker is connection
            and isinstance(connection, ResumableFlows)
            and connection is not self
            and not connection.is_leaving
        )

    def release(self, message: ApplicationMessage) -> None:
        """A QoS 2 message that was not stored: no PUBREC, and its packet id is free, so
        that the client's resend is taken as new."""
        session = self.session
        if (
            isinstance(message, ReceivedQoS2)
            and session is not None
            and session.inflight_in.get(message.packet_id or 0) is message
        ):
            del session.inflight_in[message.packet_id or 0]

    async def write_ack(self, packet: MQTTPacket[Any, Any, Any]) -> bool:
        """Send an acknowledgement; whether it was written (a gone client gets none)."""
        try:
            await self._send_packet(packet)
        except Exception:
            return False
        return True

    async def _deliver_qos2(self, message: OutgoingApplicationMessage) -> None:
        """PUBLISH, PUBREC, PUBREL, PUBCOMP; kept in the session until PUBCOMP, with no
        timeout: a resumed session goes on from where the flow stopped."""
        if self.session is None or message.packet_id is None:
            return
        packet_id = message.packet_id
        self.session.inflight_out[packet_id] = message
        if message.pubrec_packet is None:
            publish = message.build_publish_packet(dup=message.publish_packet is not None)
            received = self._waiter(self._pubrec_waiters, packet_id)
            try:
                await self._send_packet(publish)
                message.publish_packet = publish
                message.pubrec_packet = await received
            finally:
                self._pubrec_waiters.pop(packet_id, None)
        completed = self._waiter(self._pubcomp_waiters, packet_id)
        try:
            message.pubrel_packet = PubrelPacket.build(packet_id)
            await self._send_packet(message.pubrel_packet)
            message.pubcomp_packet = await completed
            self.session.inflight_out.pop(packet_id, None)
        finally:
            self._pubcomp_waiters.pop(packet_id, None)

    def _waiter(
        self, waiters: dict[int, asyncio.Future[Any]], packet_id: int
    ) -> asyncio.Future[Any]:
        # Registered before the packet goes out, so that a quick answer is not missed.
        previous = waiters.get(packet_id)
        if previous is not None and not previous.done():
            previous.cancel()
        waiter: asyncio.Future[Any] = self._loop.create_future()
        waiters[packet_id] = waiter
        return waiter

    async def handle_pubrel(self, pubrel: PubrelPacket) -> None:
        """[MQTT-4.3.3-2] every PUBREL gets a PUBCOMP and ends its flow (also one begun on
        the previous connection). One for an unknown id is answered all the same: the
        flow ended before."""
        packet_id = pubrel.packet_id
        if self.session is not None:
            self.session.inflight_in.pop(packet_id, None)
        await self._send_packet(PubcompPacket.build(packet_id))
