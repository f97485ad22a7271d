"""What the gate asks of the broker it runs in: plain operations on session keys and
topics, implemented by the amqtt adapter (so the gate never sees amqtt types)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class Links(Protocol):
    def kick(self, session_key: str) -> None:
        """End the connection of this session (its will is sent)."""

    def subscribe(self, session_key: str, filters: Sequence[str]) -> None:
        """Subscribe the session server-side (no echo of its own PUBLISHes)."""

    def unsubscribe(self, session_key: str, filters: Sequence[str]) -> None: ...

    def publish(self, topic: str, payload: bytes) -> None:
        """Send a message from the platform, at QoS 1, without waiting."""


class NoLinks:
    """Until the broker is running: nothing is connected, so nothing is to be done."""

    def kick(self, session_key: str) -> None:
        pass

    def subscribe(self, session_key: str, filters: Sequence[str]) -> None:
        pass

    def unsubscribe(self, session_key: str, filters: Sequence[str]) -> None:
        pass

    def publish(self, topic: str, payload: bytes) -> None:
        pass
