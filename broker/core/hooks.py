"""What the broker core asks of the service above it, per connection and per PUBLISH.

The core calls these directly (no plugin event tasks) so that their order is the
order of events on the wire, and a per-message hook costs one call.
"""

from __future__ import annotations

from amqtt.session import Session

from broker.core.handler import GatehouseHandler


class BrokerHooks:
    """No-ops; the gatehouse service overrides what it needs."""

    def connected(self, session: Session, handler: GatehouseHandler) -> None:
        """An authenticated connection is established (after CONNACK)."""

    def disconnected(self, session: Session, handler: GatehouseHandler) -> None:
        """The connection `handler` has ended, for whatever reason (will already sent)."""

    async def published(self, session: Session, topic: str, data: bytes, qos: int) -> bool:
        """A PUBLISH passed the topic ACL; return False to keep it from subscribers."""
        return True
