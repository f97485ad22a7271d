"""QoS 2 flows and session resumption as MQTT 3.1.1, 4.3.3 and 4.4 say, over amqtt 0.12.1.

amqtt dropped an outgoing QoS 2 message 5 s after its PUBLISH, or when the connection
ended, so a persistent session never got it again (MQTT-4.4.0-1). On reconnect it also
ran every incoming QoS 2 flow again, sending a PUBREC the client had not asked for, so
each later reply the client read was one packet late; and a PUBREL for a flow begun
on the previous connection got no PUBCOMP. And a PUBLISH "sent" on a connection that
was already going was marked sent, so it came back with DUP 1 though it never left
(MQTT-3.3.1-1). The mixin below is the base of `GatehouseHandler`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from amqtt.mqtt.disconnect import DisconnectPacket
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.mqtt.pubcomp import PubcompPacket
from amqtt.mqtt.publish import PublishPacket
from amqtt.mqtt.pubrel import PubrelPacket
from amqtt.session import OUTGOING, IncomingApplicationMessage, OutgoingApplicationMessage


class NotSent(ConnectionError):
    """A PUBLISH was not written: the connection is ending. It stays unsent (DUP 0)."""


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
        if app_message.direction != OUTGOING or not isinstance(
            app_message, OutgoingApplicationMessage
        ):
            await super()._handle_qos2_message_flow(app_message)
            return
        await self._deliver_qos2(app_message)

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
        """[MQTT-4.3.3-2] every PUBREL gets a PUBCOMP. One for a flow of the previous
        connection releases the stored message now; one for an unknown id is answered
        (the message was released before)."""
        packet_id = pubrel.packet_id
        waiter = self._pubrel_waiters.get(packet_id)
        if waiter is not None and not waiter.done():
            waiter.set_result(pubrel)
            return
        if self.session is None:
            return
        message = self.session.inflight_in.pop(packet_id, None)
        if message is not None:
            message.pubrel_packet = pubrel
            await self.session.delivered_message_queue.put(message)
        await self._send_packet(PubcompPacket.build(packet_id))
