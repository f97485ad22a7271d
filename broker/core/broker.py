"""amqtt 0.12.1's Broker with the fixes a device platform needs, as overrides in one class.

Each override names the defect it fixes (numbered as in docs/architecture.md) and
the upstream issue where there is one. Everything else is amqtt's own code. The
overrides reach into amqtt internals, so the version is pinned: see `__init__.py`.

How a PUBLISH travels here: the connection's reader (amqtt) parses it into the
session's bounded inbound queue; one consumer task per connection checks the topic
ACL and routes it at once through the subscription index to each matching session.
QoS 0 goes straight onto the subscriber's socket; QoS 1 and 2 go through amqtt's
acknowledged flows, at most `max_inflight` at a time per client, the rest queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from amqtt.adapters import ReaderAdapter, WriterAdapter
from amqtt.broker import Broker, RetainedApplicationMessage, Server
from amqtt.contexts import Action
from amqtt.errors import AMQTTError, MQTTError
from amqtt.events import BrokerEvents
from amqtt.mqtt.constants import QOS_0, QOS_1, QOS_2
from amqtt.mqtt.disconnect import DisconnectPacket
from amqtt.mqtt.protocol.broker_handler import (
    BrokerProtocolHandler,
    Subscription,
    UnSubscription,
)
from amqtt.mqtt.publish import PublishPacket
from amqtt.session import ApplicationMessage, IncomingApplicationMessage, Session
from amqtt.utils import gen_client_id

from broker.core.handler import (
    OVERLOADED,
    PROTOCOL_ERROR,
    SERVER_ERROR,
    SHUTTING_DOWN,
    TAKEN_OVER,
    GatehouseHandler,
)
from broker.core.hooks import DROP, BrokerHooks, Verdict
from broker.core.refusals import REFUSED_CONNECTS
from broker.core.session import GatehouseSession
from broker.core.subscriptions import SubscriptionIndex, has_wildcard, is_valid_filter, matches

log = logging.getLogger("gatehouse.mqtt")

REFUSED = 0x80  # SUBACK return code for a refused filter
TAKE_OVER_WAIT = 5.0  # seconds to wait for a replaced connection to wind down
DRAIN_WAIT = 5.0  # seconds to route what a departing client sent before it left


def _retain_anything(topic: str) -> bool:
    return False


@dataclass(frozen=True, slots=True)
class CoreLimits:
    """Bounds on every queue a client can fill. What happens at each bound is documented."""

    # Unacknowledged QoS 1/2 deliveries per client; more wait in the client's queue.
    max_inflight: int = 100
    # Messages queued per client (offline persistent sessions, or behind the in-flight
    # window). When full, the oldest is dropped and counted.
    max_queued: int = 1000
    # PUBLISH packets read from one connection but not yet routed. When full, further
    # QoS 0 packets are dropped (counted); a QoS 1/2 sender is disconnected unacked,
    # so it resends after reconnecting and nothing it was promised is lost.
    max_inbound: int = 1000
    # Seconds a new connection may take to send CONNECT before it is closed.
    connect_timeout: float = 10.0
    # Bytes waiting in a subscriber's socket buffer before QoS 0 messages to it are
    # dropped (counted) instead of buffered without end.
    write_high_water: int = 1 << 20
    # The largest packet body read from a client; a bigger one ends the connection
    # unread (a PUBLISH under it but over the service's payload limit gets a reply).
    max_packet: int = 2 * 512 * 1024 + 65_536
    # What happens to a PUBLISH the topic ACL refuses: dropped and counted, or the
    # connection is closed as well.
    disconnect_on_refused_publish: bool = False
    # The largest payload routed or retained, for every client (a device's request over
    # it is answered by the service first). Bigger ones are dropped and counted.
    max_payload: int = 512 * 1024
    # Retained messages kept at once, and their payload bytes. A retained PUBLISH that
    # would pass either bound is routed but not retained (counted); it still clears
    # what its topic held, so no stale message stands in for it.
    max_retained: int = 10_000
    max_retained_bytes: int = 64 * 1024 * 1024
    # Topics this says no to are never retained (devices do not retain on the platforms
    # gatehouse emulates); the message itself is routed as usual.
    never_retained: Callable[[str], bool] = _retain_anything


@dataclass(slots=True)
class CoreStats:
    """Counters for what the broker core did; read by benchmarks and the API."""

    routed: int = 0  # PUBLISH packets accepted from clients and routed
    delivered: int = 0  # messages handed to subscribers' connections
    refused_publish: int = 0  # PUBLISH packets the topic ACL refused
    dropped_slow: int = 0  # QoS 0 to a subscriber whose socket buffer was full
    dropped_queue: int = 0  # oldest queued messages dropped from a full client queue
    taken_over: int = 0
    oversized: int = 0  # PUBLISHes (and wills) over max_payload, not routed
    retain_refused: int = 0  # retained PUBLISHes not retained: device namespace or full
    refused_queued: int = 0  # queued messages the ACL no longer lets their client receive


async def _stored(stored: asyncio.Future[None]) -> BaseException | None:
    """Wait for a write to commit; why it failed, if it did."""
    try:
        # Shielded: the future is shared by everything in its batch.
        await asyncio.shield(stored)
    except Exception as exc:
        return exc
    return None


# A subscription: the session, its granted QoS, and whether the server made it (an
# implicit subscription never echoes the client's own PUBLISH back to it).
Entry = tuple[Session, int, bool]


class GatehouseBroker(Broker):
    """The broker core. Construct it like amqtt's Broker, plus `limits` and `hooks`."""

    def __init__(
        self,
        config: Any = None,
        *,
        limits: CoreLimits | None = None,
        hooks: BrokerHooks | None = None,
    ) -> None:
        super().__init__(config)
        self.limits = limits or CoreLimits()
        self.hooks = hooks or BrokerHooks()
        self.stats = CoreStats()
        self._index: SubscriptionIndex[str, Entry] = SubscriptionIndex()
        self._retained_bytes = 0  # payload bytes of `_retained_messages`

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        self._index.clear()
        self._retained_bytes = 0
        await super().start()

    async def drain(self, grace: float) -> None:
        """Shut down as a server going away should: stop accepting, then end every
        connection as abnormal (its will is sent, what it sent is handled and stored),
        waiting at most `grace` seconds for them to wind down, then amqtt's shutdown.
        """
        for server in self._servers.values():
            if server.instance is not None:
                server.instance.close()
        handlers = [
            handler
            for session, handler in self._sessions.values()
            if isinstance(handler, GatehouseHandler) and session.transitions.is_connected()
        ]
        for handler in handlers:
            handler.abort(SHUTTING_DOWN)
        if handlers:
            await asyncio.wait(
                [asyncio.ensure_future(h.finished.wait()) for h in handlers], timeout=grace
            )
        await self.shutdown()

    @property
    def subscriptions(self) -> dict[str, list[tuple[Session, int]]]:
        """amqtt's view of the subscriptions (filter -> [(session, qos)]), built on demand."""
        view: dict[str, list[tuple[Session, int]]] = {}
        for topic_filter, _client, (session, qos, _implicit) in self._index.items():
            view.setdefault(topic_filter, []).append((session, qos))
        return view

    def subscription_count(self) -> int:
        return len(self._index)

    # -- connecting ------------------------------------------------------------------

    async def _initialize_client_session(
        self,
        reader: ReaderAdapter,
        writer: WriterAdapter,
        remote_address: str,
        remote_port: int,
    ) -> tuple[BrokerProtocolHandler, Session]:
        """Read CONNECT into a fresh session; nothing existing is touched before auth.

        Defect 2: amqtt deleted the existing session of a clean-session CONNECT here,
        before authentication, so a refused impostor silently cut the real client off.
        """
        try:
            handler, session = await asyncio.wait_for(
                GatehouseHandler.init_from_connect(reader, writer, self.plugins_manager),
                self.limits.connect_timeout,
            )
        except (TimeoutError, AMQTTError, MQTTError) as exc:
            # A socket that never sends CONNECT must not hold a connection slot forever.
            # Issue 14, item 14: logged throttled; amqtt's line per socket is filtered out.
            with contextlib.suppress(Exception):
                await writer.close()
            reason = "no CONNECT in time" if isinstance(exc, TimeoutError) else f"{exc}"
            REFUSED_CONNECTS.note(f"{remote_address}:{remote_port}", reason)
            raise MQTTError(f"{remote_address}:{remote_port}: {reason}") from None
        if not session.client_id:
            session.client_id = gen_client_id()
        session.retained_messages = asyncio.Queue(maxsize=self.limits.max_queued)
        session.delivered_message_queue = asyncio.Queue(maxsize=self.limits.max_inbound)
        return handler, session

    def create_offline_session(self, client_id: str) -> tuple[BrokerProtocolHandler, Session]:
        session = GatehouseSession()
        session.client_id = client_id
        session.clean_session = False
        session.retained_messages = asyncio.Queue(maxsize=self.limits.max_queued)
        session.transitions.disconnect()
        return GatehouseHandler(self.plugins_manager, session), session

    async def _handle_client_session(
        self,
        reader: ReaderAdapter,
        writer: WriterAdapter,
        client_session: Session,
        handler: BrokerProtocolHandler,
        server: Server,
        listener_name: str,
    ) -> None:
        assert isinstance(handler, GatehouseHandler)
        handler.max_read = self.limits.max_packet
        authenticated = await self._authenticate(
            client_session, self.listeners_config[listener_name]
        )
        if not authenticated:
            # Defect 2: the refused client never reaches the session table.
            client_session.parent = 0
            handler.attach(client_session, reader, writer)
            await handler.mqtt_connack_authorize(False)
            await writer.close()
            return
        try:
            session = await self._adopt_session(client_session)
        except AMQTTError as exc:
            log.warning("%s: %s", client_session.client_id, exc)
            await writer.close()
            return
        client_id = session.client_id
        assert client_id is not None
        session.transitions.connect()
        handler.attach(session, reader, writer)
        handler.on_subscribe = functools.partial(self._on_subscribe, session, handler)
        handler.on_unsubscribe = functools.partial(self._on_unsubscribe, session, handler)
        self._sessions[client_id] = (session, handler)
        try:
            await handler.mqtt_connack_authorize(True)
            # From here to the hook nothing waits: the service counts the device online
            # in the loop turn that wrote its CONNACK, so a command sent the moment the
            # device reads it is not refused as offline. What the hook and the resumed
            # flows send is sent by tasks, once this turn ends.
            # [MQTT-4.4.0-1] a resumed session goes on with its unacknowledged
            # deliveries first; then the hook, so that nothing it sends goes out twice.
            self._resume_inflight(session, handler)
            self.hooks.connected(session, handler)
            # Defect 3: amqtt replayed retained messages for every subscription in the
            # broker here. A reconnecting session gets only what was queued for it;
            # retained messages go out on SUBSCRIBE, as MQTT 3.1.1, 3.3.1.3 says.
            self._pump_queue(session, handler)
            await self.plugins_manager.fire_event(
                BrokerEvents.CLIENT_CONNECTED, client_id=client_id, client_session=session
            )
            await handler.start()
            await self._client_message_loop(session, handler)
        finally:
            handler.finished.set()
            self.hooks.disconnected(session, handler)
            if session.clean_session and self._sessions.get(client_id, (None, None))[1] is handler:
                await self._cleanup_session(client_id)

    async def _adopt_session(self, incoming: Session) -> Session:
        """The session an authenticated client continues: a take-over ends the old connection."""
        client_id = incoming.client_id
        assert client_id is not None
        for _attempt in range(3):
            existing = self._sessions.get(client_id)
            if existing is None:
                incoming.parent = 0
                return incoming
            old_session, old_handler = existing
            if old_session.transitions.is_connected():
                await self._take_over(old_session, old_handler)
                continue
            if incoming.clean_session or old_session.clean_session:
                await self._delete_session(client_id)
                incoming.parent = 0
                return incoming
            # Persistent session: the new connection brings its own will and credentials.
            for name in (
                "will_flag",
                "will_message",
                "will_topic",
                "will_qos",
                "will_retain",
                "keep_alive",
                "username",
                "password",
                "remote_address",
                "remote_port",
                "ssl_object",
                "is_anonymous",
                "identity",
            ):
                setattr(old_session, name, getattr(incoming, name))
            old_session.attributes.update(incoming.attributes)
            old_session.parent = 1
            return old_session
        raise AMQTTError("the client id is being taken over by several connections at once")

    async def _take_over(self, session: Session, handler: BrokerProtocolHandler) -> None:
        """End a connection whose client id has just logged in elsewhere (its will is sent)."""
        log.info("%s logged in again: closing its previous connection", session.client_id)
        self.stats.taken_over += 1
        if isinstance(handler, GatehouseHandler):
            handler.abort(TAKEN_OVER)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(handler.finished.wait(), TAKE_OVER_WAIT)
        if session.transitions.is_connected():  # an old connection that did not wind down
            await self._stop_handler(handler)
            session.transitions.disconnect()

    # -- the per-connection loop -------------------------------------------------------

    async def _client_message_loop(
        self, client_session: Session, handler: BrokerProtocolHandler
    ) -> None:
        """Route a connection's PUBLISHes until it ends; SUBSCRIBEs are handled as they come.

        Defect 6: amqtt logged `repr` of the whole subscription table on every
        SUBSCRIBE (built even with debug off) and re-armed four futures per message.
        """
        assert isinstance(handler, GatehouseHandler)
        disconnect_waiter = asyncio.ensure_future(handler.wait_disconnect())
        publishes = asyncio.create_task(self._consume_publishes(client_session, handler))
        try:
            await asyncio.wait([disconnect_waiter, publishes], return_when=asyncio.FIRST_COMPLETED)
            if not publishes.done():
                # PUBLISHes read before the client left are handled (and stored) before
                # the consumer stops, though the client will not see their PUBACKs.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        client_session.delivered_message_queue.join(), DRAIN_WAIT
                    )
            if handler.acker is not None:
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(asyncio.shield(handler.acker), DRAIN_WAIT)
        finally:
            publishes.cancel()
            (failure,) = await asyncio.gather(publishes, return_exceptions=True)
            if isinstance(failure, Exception):
                log.error(
                    "%s: handling its PUBLISH failed, disconnecting: %r",
                    client_session.client_id,
                    failure,
                    exc_info=failure,
                )
            if handler.acker is not None:
                handler.acker.cancel()
            for message, _verdict in handler.unacked:
                self._release(client_session, handler, message)  # never answered
        if not disconnect_waiter.done():  # the consumer ended the connection
            handler.abort(SERVER_ERROR if isinstance(failure, Exception) else PROTOCOL_ERROR)
        await self._handle_disconnect(client_session, handler, disconnect_waiter)

    async def _consume_publishes(self, session: Session, handler: GatehouseHandler) -> None:
        inbound = session.delivered_message_queue
        while True:
            message = await inbound.get()
            handled = False
            try:
                handled = await self._handle_publish(session, handler, message)
            finally:
                inbound.task_done()
                if not handled:  # refused, or cut off before it was answered
                    self._release(session, handler, message)
            if not handled:
                return

    async def _on_subscribe(
        self, session: Session, handler: GatehouseHandler, request: Subscription
    ) -> None:
        codes = [await self.add_subscription(topic, session) for topic in request.topics]
        await handler.mqtt_acknowledge_subscription(request.packet_id, codes)
        for (topic_filter, _qos), code in zip(request.topics, codes, strict=True):
            if code == REFUSED:
                continue
            await self.plugins_manager.fire_event(
                BrokerEvents.CLIENT_SUBSCRIBED,
                client_id=session.client_id,
                topic=topic_filter,
                qos=code,
            )
            await self._publish_retained_messages_for_subscription((topic_filter, code), session)

    async def _on_unsubscribe(
        self, session: Session, handler: GatehouseHandler, request: UnSubscription
    ) -> None:
        for topic_filter in request.topics:
            self._del_subscription(topic_filter, session)
            await self.plugins_manager.fire_event(
                BrokerEvents.CLIENT_UNSUBSCRIBED,
                client_id=session.client_id,
                topic=topic_filter,
            )
        await handler.mqtt_acknowledge_unsubscription(request.packet_id)

    async def _handle_publish(
        self, session: Session, handler: GatehouseHandler, message: ApplicationMessage
    ) -> bool:
        """Check one PUBLISH from a client and pass it on to be answered; False ends the
        connection."""
        topic = message.topic
        if not topic or "#" in topic or "+" in topic or topic.startswith("$"):
            # [MQTT-4.7.3-1], [MQTT-3.3.2-2], [MQTT-4.7.2-1]
            log.info("%s published to an invalid topic %r: disconnecting", session.client_id, topic)
            return False
        await self.plugins_manager.fire_event(
            BrokerEvents.MESSAGE_RECEIVED, client_id=session.client_id, message=message
        )
        data = bytes(message.data)
        qos = message.qos or QOS_0
        if not await self._topic_filtering(session, topic, Action.PUBLISH):
            self.stats.refused_publish += 1
            if self.limits.disconnect_on_refused_publish:
                log.info("%s published to %r, refused: disconnecting", session.client_id, topic)
                return False
            verdict = DROP  # acknowledged all the same: MQTT 3.1.1 has no way to say no
        else:
            verdict = await self.hooks.published(session, topic, data, qos)
        pending = handler.unacked
        if not pending and handler.acker is None:
            if verdict.stored is None:
                await self._complete_publish(session, handler, message, verdict, None)
                return True
            if session.delivered_message_queue.empty():
                # Nothing else to work on (a device waiting for its reply): wait here
                # rather than start a task for one message.
                failure = await _stored(verdict.stored)
                await self._complete_publish(session, handler, message, verdict, failure)
                return True
        # Answered and acknowledged once stored, behind what came before it.
        pending.append((message, verdict))
        if handler.acker is None:
            handler.acker = asyncio.create_task(self._acknowledge_in_order(session, handler))
        while len(pending) >= self.limits.max_inbound:
            handler.unacked_room.clear()
            await handler.unacked_room.wait()
        return True

    async def _acknowledge_in_order(self, session: Session, handler: GatehouseHandler) -> None:
        """Complete a connection's PUBLISHes as their writes commit, oldest first."""
        pending = handler.unacked
        try:
            while pending:
                message, verdict = pending[0]
                failure = None if verdict.stored is None else await _stored(verdict.stored)
                pending.popleft()
                handler.unacked_room.set()
                await self._complete_publish(session, handler, message, verdict, failure)
        finally:
            handler.acker = None

    async def _complete_publish(
        self,
        session: Session,
        handler: GatehouseHandler,
        message: ApplicationMessage,
        verdict: Verdict,
        failure: BaseException | None,
    ) -> None:
        """Answer, route and acknowledge one PUBLISH; if it was not stored, only answer.

        Whether a QoS 2 message was stored is recorded before anything awaits, so that
        a cancel (a connection's drain running out) leaves no flow undecided.
        """
        if failure is not None:
            # Not stored: no PUBACK or PUBREC, so the client still holds it and can resend
            # (a QoS 2 packet id is released, so that the resend is taken as new).
            self._release(session, handler, message)
        elif message.qos == QOS_2:
            handler.decide_qos2(message)
        if verdict.respond is not None:
            try:
                await verdict.respond(failure)
            except Exception:
                log.exception("%s: answering its PUBLISH failed", session.client_id)
        if failure is not None:
            return
        if verdict.route and self._within_payload_limit(session, message.topic, message.data):
            await self.plugins_manager.fire_event(
                BrokerEvents.MESSAGE_BROADCAST, client_id=session.client_id, message=message
            )
            self.stats.routed += 1
            await self.route(
                message.topic, bytes(message.data), message.qos or QOS_0, origin=session.client_id
            )
            if message.publish_packet is not None and message.publish_packet.retain_flag:
                await self.retain_message(session, message.topic, message.data, message.qos)
        if message.qos == QOS_1 and isinstance(message, IncomingApplicationMessage):
            await handler.acknowledge(message)
        elif message.qos == QOS_2:
            # The PUBREC goes to the session's connection now (a reconnect may have
            # replaced the one that read the PUBLISH).
            await handler.acknowledge_qos2(message, self._connection_of(session))

    def _connection_of(self, session: Session) -> BrokerProtocolHandler | None:
        """The session's connection now (after a take-over, not the one that read a
        message)."""
        entry = self._sessions.get(session.client_id or "")
        return entry[1] if entry is not None and entry[0] is session else None

    def _release(self, session: Session, handler: GatehouseHandler, message: Any) -> None:
        """A PUBLISH `handler` read and did not get stored. A QoS 2 one sent again on the
        session's connection now (a take-over while it was being stored) is handled
        again there, since that connection waits for its PUBREC; otherwise its packet
        id is free again (`release`)."""
        current = self._connection_of(session)
        if isinstance(current, GatehouseHandler) and handler.asked_again_on(message, current):
            inbound = session.delivered_message_queue
            if not inbound.full():
                inbound.put_nowait(message)
                return
            current.abort(OVERLOADED)  # it resends after reconnecting
        handler.release(message)

    async def _handle_disconnect(
        self,
        client_session: Session,
        handler: BrokerProtocolHandler,
        disconnect_waiter: asyncio.Future[Any],
    ) -> None:
        """End a connection: its will (unless it sent DISCONNECT), then the handler.

        Replaces amqtt's, which published the will to any topic the client named, its
        ACL and the service unasked, and which read the result of `disconnect_waiter`
        even when the broker itself had just ended the connection (a PUBLISH to `$SYS/x`
        or `""`, a refused topic with `disconnect_on_refused_publish`): an
        InvalidStateError, so the will and the disconnect hooks were skipped.
        """
        assert isinstance(handler, GatehouseHandler)
        disconnect_waiter.cancel()  # if the broker ended the connection, it never resolves
        # The handler's record, not the waiter's result: the waiter reads None when the
        # DISCONNECT came before it started waiting.
        if client_session.will_flag and not isinstance(handler.farewell, DisconnectPacket):
            try:
                await self._publish_will(client_session, handler)
            except Exception:
                log.exception("%s: publishing its will failed", client_session.client_id)
        client_session.will_flag = False  # [MQTT-3.1.2-10] the will is used once at most
        await self._stop_handler(handler)
        client_session.transitions.disconnect()
        await self.plugins_manager.fire_event(
            BrokerEvents.CLIENT_DISCONNECTED,
            client_id=client_session.client_id,
            client_session=client_session,
        )

    async def _publish_will(self, session: Session, handler: GatehouseHandler) -> None:
        """Issue 14, item 10: a will goes the way of any PUBLISH of its client.

        The topic checks and ACL of `_handle_publish`, then `hooks.published` (a
        device's will on its own measurepoint post is checked against its thing model
        like a post), then, once what the service stored has committed,
        `_complete_publish` answers, routes and retains it as it would the PUBLISH.
        """
        topic = session.will_topic or ""
        data = bytes(session.will_message or b"")
        qos = session.will_qos or QOS_0
        retain = bool(session.will_retain)
        if not topic or has_wildcard(topic) or topic.startswith("$"):
            log.info("%s: its will topic %r is invalid: not sent", session.client_id, topic)
            return
        if not await self._topic_filtering(session, topic, Action.PUBLISH):
            self.stats.refused_publish += 1
            log.info("%s: its will topic %r is refused by the ACL", session.client_id, topic)
            return
        message = IncomingApplicationMessage(None, topic, qos, data, retain)
        message.publish_packet = PublishPacket.build(topic, data, None, False, qos, retain)
        verdict = await self.hooks.published(session, topic, data, qos)
        failure: BaseException | None = None
        if verdict.stored is not None:
            try:
                failure = await asyncio.wait_for(_stored(verdict.stored), DRAIN_WAIT)
            except TimeoutError as exc:
                failure = exc
        await self._complete_publish(session, handler, message, verdict, failure)

    def _within_payload_limit(self, session: Session, topic: str, data: bytes | bytearray) -> bool:
        if len(data) <= self.limits.max_payload:
            return True
        self.stats.oversized += 1
        log.info(
            "%s published %d bytes to %r, over the limit of %d: not routed",
            session.client_id,
            len(data),
            topic,
            self.limits.max_payload,
        )
        return False

    async def retain_message(
        self,
        source_session: Session | None,
        topic_name: str | None,
        data: bytes | bytearray | None,
        qos: int | None = None,
    ) -> None:
        """Keep, replace or clear a topic's retained message, within bounds.

        Issue 14, item 5: amqtt kept every retained message of any size without end,
        device topics included, and an empty payload left an empty entry behind instead
        of removing it [MQTT-3.3.1-10], [MQTT-3.3.1-11].
        """
        if topic_name is None:
            return
        if self.limits.never_retained(topic_name):
            self.stats.retain_refused += 1
            return
        previous = self._retained_messages.pop(topic_name, None)
        if previous is not None:
            self._retained_bytes -= len(previous.data)
        if not data:
            return
        count, size = len(self._retained_messages), self._retained_bytes + len(data)
        if count >= self.limits.max_retained or size > self.limits.max_retained_bytes:
            self.stats.retain_refused += 1
            client_id = source_session.client_id if source_session is not None else None
            log.info(
                "%s: retained store full (%d messages, %d bytes): %r not retained",
                client_id,
                count,
                self._retained_bytes,
                topic_name,
            )
            return
        self._retained_messages[topic_name] = RetainedApplicationMessage(
            source_session, topic_name, bytes(data), qos
        )
        self._retained_bytes = size

    # -- subscriptions -----------------------------------------------------------------

    async def add_subscription(self, subscription: tuple[str, int], session: Session) -> int:
        topic_filter, qos = subscription
        if not is_valid_filter(topic_filter) or qos not in (0, 1, 2):
            return REFUSED
        if not await self._topic_filtering(session, topic_filter, Action.SUBSCRIBE):
            return REFUSED
        max_qos = self.config.get("max-qos", qos)
        granted = min(qos, max_qos) if isinstance(max_qos, int) else qos
        assert session.client_id is not None
        self._index.add(topic_filter, session.client_id, (session, granted, False))
        return granted

    def add_implicit_subscription(self, session: Session, topic_filter: str, qos: int) -> None:
        """Subscribe a session on the server's initiative (docs/protocol.md, section 3).

        It receives what others publish there, never its own PUBLISHes, and an explicit
        SUBSCRIBE to the same filter replaces it.
        """
        assert session.client_id is not None
        self._index.add(topic_filter, session.client_id, (session, qos, True))

    def remove_implicit_subscription(self, session: Session, topic_filter: str) -> None:
        self._del_subscription(topic_filter, session)

    def _del_subscription(self, a_filter: str, session: Session) -> int:
        return int(
            session.client_id is not None and self._index.remove(a_filter, session.client_id)
        )

    async def _del_all_subscriptions(self, session: Session) -> None:
        """Defect 5: amqtt scanned every filter in the broker to drop one client's."""
        if session.client_id is not None:
            self._index.remove_client(session.client_id)

    async def _publish_retained_messages_for_subscription(
        self, subscription: tuple[str, int], session: Session
    ) -> None:
        topic_filter, qos = subscription
        if has_wildcard(topic_filter):
            found = [m for t, m in self._retained_messages.items() if matches(t, topic_filter)]
        else:
            one = self._retained_messages.get(topic_filter)
            found = [one] if one is not None else []
        for retained in found:
            if not await self._topic_filtering(session, retained.topic, Action.RECEIVE):
                continue  # a wide filter ('#') sees only what the client may receive
            granted = min(qos, retained.qos if retained.qos is not None else qos)
            self._deliver(session, retained.topic, bytes(retained.data), granted, retain=True)

    # -- routing -----------------------------------------------------------------------

    async def _broadcast_message(
        self,
        session: Session | None,
        topic: str | None,
        data: bytes | bytearray | None,
        force_qos: int | None = None,
    ) -> None:
        """Wills and internal messages: routed at once rather than through a queue."""
        if topic is None or data is None:
            return
        await self.route(topic, bytes(data), force_qos)

    async def route(
        self, topic: str, data: bytes, qos: int | None, *, origin: str | None = None
    ) -> int:
        """Deliver to every subscriber of `topic`; returns how many received it.

        Defect 5: amqtt matched each PUBLISH against every filter in the broker. The
        index visits only matching filters. Defect 4: the delivery QoS is the lower of
        the publish QoS and the subscription's (MQTT 3.1.1, 3.3.5); `qos=None` means
        "the subscription's", for messages the broker itself sends.
        A client with several matching filters gets one copy at the highest QoS.
        `origin`, the publishing client, is skipped where its subscription is implicit.
        """
        targets: dict[str, tuple[Session, int]] = {}
        for client_id, (target, sub_qos, implicit) in self._index.match(topic):
            if implicit and client_id == origin:
                continue
            granted = sub_qos if qos is None else min(qos, sub_qos)
            seen = targets.get(client_id)
            if seen is None or seen[1] < granted:
                targets[client_id] = (target, granted)
        count = 0
        for target, granted in targets.values():
            if not await self._topic_filtering(target, topic, Action.RECEIVE):
                continue
            if self._deliver(target, topic, data, granted, retain=False):
                count += 1
        return count

    def _deliver(
        self, session: Session, topic: str, data: bytes, qos: int, *, retain: bool
    ) -> bool:
        """Hand one message to one session: its socket now, or its bounded queue."""
        entry = self._sessions.get(session.client_id or "")
        handler = entry[1] if entry is not None and entry[0] is session else None
        # [MQTT-3.3.1-1] a connection whose client has left gets nothing new: it would be
        # marked sent, and resent with DUP 1, though it never went out.
        connected = (
            isinstance(handler, GatehouseHandler)
            and session.transitions.state == "connected"
            and not handler.is_leaving
        )
        if not connected:
            # MQTT 3.1.1, 3.1.2.4: queue QoS 1 and 2 for a disconnected persistent session.
            if qos > QOS_0 and not session.clean_session:
                self._enqueue(session, topic, data, qos)
                return True
            return False
        assert isinstance(handler, GatehouseHandler)
        if qos == QOS_0:
            packet = PublishPacket.build(topic, data, None, False, QOS_0, retain).to_bytes()
            if handler.write_now(bytes(packet), self.limits.write_high_water):
                self.stats.delivered += 1
                return True
            self.stats.dropped_slow += 1
            return False
        if (
            len(handler.outbound) >= self.limits.max_inflight
            or not session.retained_messages.empty()
        ):
            self._enqueue(session, topic, data, qos)  # keeps order behind what already waits
            return True
        self._start_flow(session, handler, topic, data, qos, retain)
        return True

    def _enqueue(self, session: Session, topic: str, data: bytes, qos: int) -> None:
        queue = session.retained_messages
        if queue.full():
            queue.get_nowait()  # the oldest goes: a bounded queue, documented in CoreLimits
            self.stats.dropped_queue += 1
        queue.put_nowait(RetainedApplicationMessage(None, topic, data, qos))

    def _start_flow(
        self,
        session: Session,
        handler: GatehouseHandler,
        topic: str,
        data: bytes,
        qos: int,
        retain: bool,
    ) -> None:
        self.stats.delivered += 1
        self._track_flow(session, handler, handler.mqtt_publish(topic, data, qos, retain=retain))

    def _resume_inflight(self, session: Session, handler: GatehouseHandler) -> None:
        """Go on with a resumed session's unacknowledged deliveries, in their order."""
        for message in handler.inflight():
            self._track_flow(session, handler, handler.resend(message))

    def _track_flow(
        self, session: Session, handler: GatehouseHandler, flow: Coroutine[Any, Any, Any]
    ) -> None:
        """Run one QoS 1/2 delivery in the client's in-flight window."""
        task = asyncio.ensure_future(flow)
        handler.outbound.add(task)

        def finished(done: asyncio.Future[Any]) -> None:
            handler.outbound.discard(task)
            if not done.cancelled() and done.exception() is not None:
                log.debug("%s: delivery failed: %r", session.client_id, done.exception())
            self._pump_queue(session, handler)

        task.add_done_callback(finished)

    def _pump_queue(self, session: Session, handler: GatehouseHandler) -> None:
        """Move queued messages into the in-flight window, oldest first."""
        queue = session.retained_messages
        if self._sessions.get(session.client_id or "", (None, None))[1] is not handler:
            return
        while not queue.empty() and len(handler.outbound) < self.limits.max_inflight:
            if session.transitions.state != "connected" or handler.is_leaving:
                return
            message = queue.get_nowait()
            if not self.hooks.may_receive(session, message.topic):
                self.stats.refused_queued += 1
                continue
            qos = message.qos or QOS_0
            if qos == QOS_0:
                self._deliver(session, message.topic, bytes(message.data), qos, retain=False)
            else:
                self._start_flow(session, handler, message.topic, bytes(message.data), qos, False)

    # -- auth and ACL ------------------------------------------------------------------

    async def _authenticate(self, session: Session, listener: Any) -> bool:
        """amqtt's rule (every answering plugin says yes, and one answers), called directly."""
        answers = [
            await plugin.authenticate(session=session)
            for plugin in self.plugins_manager._auth_plugins
        ]
        decided = [answer for answer in answers if answer is not None]
        return bool(decided) and all(decided)

    async def _topic_filtering(self, session: Session, topic: str, action: Action) -> bool:
        """Ask the topic plugins directly, without a task per plugin per message."""
        plugins = self.plugins_manager._topic_plugins
        if not plugins:
            return True
        for plugin in plugins:
            if not await plugin.topic_filtering(session=session, topic=topic, action=action):
                return False
        return True

    # -- housekeeping --------------------------------------------------------------------

    async def _session_monitor(self) -> None:
        """Expire disconnected persistent sessions, when an expiry is configured.

        Clean sessions go the moment their connection ends. Stock amqtt scanned every
        session each second and also dropped anonymous persistent sessions, losing
        what was queued for them.
        """
        expiry = self.config.session_expiry_interval
        if expiry is None:
            return
        while True:
            await asyncio.sleep(1)
            cutoff = time.time() - expiry
            stale = [
                client_id
                for client_id, (session, _handler) in self._sessions.items()
                if session.transitions.state == "disconnected"
                and session.last_disconnect_time is not None
                and session.last_disconnect_time < cutoff
            ]
            for client_id in stale:
                await self._cleanup_session(client_id)
