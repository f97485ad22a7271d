"""amqtt's Session with a plain three-state field instead of a `transitions.Machine`.

Stock amqtt builds a state machine object graph for every session: measured, it was
about 40% of the broker's CPU per CONNECT, and memory on every connection. The states
and their rules are amqtt's: new -> connected <-> disconnected, any -> disconnected.
"""

from __future__ import annotations

from typing import Any

from amqtt.session import Session

NEW, CONNECTED, DISCONNECTED = "new", "connected", "disconnected"


class SessionStates:
    """The subset of the `transitions.Machine` interface that amqtt and gatehouse use."""

    __slots__ = ("_session", "state")

    def __init__(self, session: GatehouseSession) -> None:
        self._session = session
        self.state = NEW

    def connect(self) -> None:
        if self.state == CONNECTED:
            raise ValueError(f"session {self._session.client_id} is already connected")
        self.state = CONNECTED
        self._session._on_enter_connected()

    def disconnect(self) -> None:
        self.state = DISCONNECTED
        self._session._on_enter_disconnected()

    def is_new(self) -> bool:
        return self.state == NEW

    def is_connected(self) -> bool:
        return self.state == CONNECTED

    def is_disconnected(self) -> bool:
        return self.state == DISCONNECTED


class GatehouseSession(Session):
    # Who the client is, set by the service at authentication (None for bare cores).
    identity: Any = None

    def _init_states(self) -> None:
        self.transitions = SessionStates(self)
