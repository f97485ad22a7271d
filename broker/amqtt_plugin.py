"""The adapter between amqtt 0.12.1 and gatehouse's gate: amqtt types stop here.

The plugins and hooks unpack what they need from amqtt's session and call the plain
decisions in `broker.gate`. Each authenticated session carries its `identity`, and its
client id becomes the identity's session key, so one device has one connection
whatever client id (timestamp included) it sends, and no anonymous client can name
itself into a device's session.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from amqtt.broker import Action
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import Session

from broker.core import ROUTE, BrokerHooks, GatehouseBroker, GatehouseHandler, Verdict
from broker.gate import Gate
from broker.gate.admission import ConnectAttempt, Refusal
from broker.gate.identity import AnonymousIdentity, DeviceIdentity

log = logging.getLogger("gatehouse.mqtt")

IMPLICIT_QOS = 1  # replies and downlinks go at the publisher's QoS, up to 1


def _gate(config: Any) -> Gate:
    gate = config.gate
    if not isinstance(gate, Gate):
        raise TypeError("gatehouse's amqtt plugins need a Gate in their configuration")
    return gate


class GatehouseAuthPlugin(BaseAuthPlugin):
    """Admits a client or refuses it (CONNACK 5). Nothing is anonymous unless configured."""

    @dataclass
    class Config:
        gate: Any = None

    async def authenticate(self, *, session: Session) -> bool:
        ssl_object = session.ssl_object
        decision = _gate(self.config).admit(
            ConnectAttempt(
                client_id=session.client_id or "",
                username=session.username,
                password=session.password,
                tls=ssl_object is not None,
                # amqtt keeps the TLS object on the session (StreamWriterAdapter's
                # get_ssl_info, i.e. the transport's "ssl_object"); the certificate was
                # verified against gatehouse's CA in the handshake.
                peer_cert=ssl_object.getpeercert(binary_form=True) if ssl_object else None,
                peer=str(session.remote_address or ""),
            )
        )
        if isinstance(decision, Refusal):
            return False
        session.identity = decision
        session.client_id = decision.session_key
        session.is_anonymous = isinstance(decision, AnonymousIdentity)
        return True


class GatehouseTopicPlugin(BaseTopicPlugin):
    """The topic ACL, asked by the core on every SUBSCRIBE, PUBLISH and delivery."""

    @dataclass
    class Config:
        gate: Any = None

    async def topic_filtering(
        self,
        *,
        session: Session | None = None,
        topic: str | None = None,
        action: Action | None = None,
    ) -> bool:
        identity = getattr(session, "identity", None)
        if identity is None or topic is None:
            return False
        gate = _gate(self.config)
        if action == Action.PUBLISH:
            return gate.may_publish(identity, topic)
        if action == Action.SUBSCRIBE:
            return gate.may_subscribe(identity, topic)
        return gate.may_receive(identity, topic)


class GateHooks(BrokerHooks):
    """Connection and message hooks of the broker core, forwarded to the gate."""

    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self._broker: GatehouseBroker | None = None
        self._sending: set[asyncio.Future[int]] = set()

    def bind(self, broker: GatehouseBroker) -> None:
        self._broker = broker

    @property
    def broker(self) -> GatehouseBroker:
        if self._broker is None:
            raise RuntimeError("GateHooks used before bind()")
        return self._broker

    def connected(self, session: Session, handler: GatehouseHandler) -> None:
        identity = getattr(session, "identity", None)
        if identity is None:
            return
        self.gate.connected(identity)
        if isinstance(identity, DeviceIdentity):
            for topic_filter in identity.downlink_filters:
                self.broker.add_implicit_subscription(session, topic_filter, IMPLICIT_QOS)

    def disconnected(self, session: Session, handler: GatehouseHandler) -> None:
        identity = getattr(session, "identity", None)
        if identity is not None:
            self.gate.disconnected(identity, handler.end_reason)

    def may_receive(self, session: Session, topic: str) -> bool:
        identity = getattr(session, "identity", None)
        return identity is not None and self.gate.may_receive(identity, topic)

    async def published(self, session: Session, topic: str, data: bytes, qos: int) -> Verdict:
        identity = getattr(session, "identity", None)
        if identity is None:
            return ROUTE
        outcome = await self.gate.uplink(identity, topic, data)
        if outcome is None:
            return ROUTE
        if outcome.oversized:
            self.broker.stats.oversized += 1  # refused by the gate, counted as the core's
        delivery = outcome.delivery if outcome.accepted else None
        if outcome.reply is None and outcome.then is None and delivery is None:
            return Verdict(outcome.accepted, outcome.stored)
        reply_topic, reply_qos = topic + "_reply", min(qos, IMPLICIT_QOS)
        origin = session.client_id

        async def respond(failure: BaseException | None) -> None:
            """The reply, once the message is stored (or known not to be); a delivery
            in place of the PUBLISH only once stored, as the core routes one."""
            reply = outcome.reply if failure is None else await outcome.not_stored_reply()
            if reply is not None:
                await self.broker.route(reply_topic, reply, reply_qos)
            if delivery is not None and failure is None:
                self.broker.stats.routed += 1
                await self.broker.route(*delivery, qos, origin=origin)
            if outcome.then is not None:
                outcome.then()

        # A delivery is routed here, so the core neither routes nor retains the PUBLISH.
        return Verdict(outcome.accepted and delivery is None, outcome.stored, respond)

    # -- broker.gate.links.Links: what the gate asks of the broker --------------------------

    def kick(self, session_key: str) -> None:
        entry = self.broker.sessions.get(session_key)
        if entry is not None and isinstance(entry[1], GatehouseHandler):
            entry[1].abort()

    def subscribe(self, session_key: str, filters: Sequence[str]) -> None:
        entry = self.broker.sessions.get(session_key)
        if entry is not None:
            for topic_filter in filters:
                self.broker.add_implicit_subscription(entry[0], topic_filter, IMPLICIT_QOS)

    def unsubscribe(self, session_key: str, filters: Sequence[str]) -> None:
        entry = self.broker.sessions.get(session_key)
        if entry is not None:
            for topic_filter in filters:
                self.broker.remove_implicit_subscription(entry[0], topic_filter)

    def publish(self, topic: str, payload: bytes) -> None:
        task = asyncio.ensure_future(self.broker.route(topic, payload, IMPLICIT_QOS))
        self._sending.add(task)
        task.add_done_callback(functools.partial(self._sent, topic))

    async def route(self, topic: str, payload: bytes, qos: int) -> int:
        return await self.broker.route(topic, payload, qos)

    def _sent(self, topic: str, task: asyncio.Future[int]) -> None:
        self._sending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("sending to %s failed: %r", topic, task.exception())
