"""What the broker core asks of the service above it, per connection and per PUBLISH.

The core calls these directly (no plugin event tasks) so that their order is the
order of events on the wire, and a per-message hook costs one call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from amqtt.session import Session

from broker.core.handler import GatehouseHandler


@dataclass(slots=True)
class Verdict:
    """What the service decided about one PUBLISH.

    The core routes the message to subscribers (if `route`), sends the service's answer
    (`respond`) and acknowledges a QoS 1 or 2 PUBLISH (PUBACK, PUBREC) only once
    `stored` is done, in the order the PUBLISHes arrived. If `stored` fails, nothing
    was stored: `respond` is told why, the message is not routed and no PUBACK or
    PUBREC goes out.
    """

    route: bool = True
    stored: asyncio.Future[None] | None = None
    respond: Callable[[BaseException | None], Awaitable[None]] | None = None


ROUTE = Verdict()
DROP = Verdict(route=False)


class BrokerHooks:
    """No-ops; the gatehouse service overrides what it needs."""

    def connected(self, session: Session, handler: GatehouseHandler) -> None:
        """An authenticated connection is established (after CONNACK)."""

    def disconnected(self, session: Session, handler: GatehouseHandler) -> None:
        """The connection `handler` has ended, for whatever reason (will already sent)."""

    async def published(self, session: Session, topic: str, data: bytes, qos: int) -> Verdict:
        """A PUBLISH passed the topic ACL: what becomes of it."""
        return ROUTE

    def may_receive(self, session: Session, topic: str) -> bool:
        """Asked again as a queued message leaves a client's queue for its socket: what
        the ACL allowed when it was queued it may not allow now (a sub-device gone from
        its gateway, a product deleted)."""
        return True
