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

    async def route(self, topic: str, payload: bytes, qos: int) -> int:
        """Send a message from the platform now, at most at `qos`; how many subscribers
        it went to (queued for those whose in-flight window is full)."""
        ...


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

    async def route(self, topic: str, payload: bytes, qos: int) -> int:
        return 0


class LateLinks:
    """The running broker's links, bound once it exists: the one cycle of the assembly.
    The broker is built around the gate, and the gate's parts send through the broker,
    so the parts get this forwarder and broker/assemble.py's caller binds it to the
    broker before the broker accepts anyone. Until then nothing is connected, so
    nothing is to be done (it forwards to `NoLinks`)."""

    def __init__(self) -> None:
        self._target: Links = NoLinks()

    def bind(self, links: Links) -> None:
        self._target = links

    def kick(self, session_key: str) -> None:
        self._target.kick(session_key)

    def subscribe(self, session_key: str, filters: Sequence[str]) -> None:
        self._target.subscribe(session_key, filters)

    def unsubscribe(self, session_key: str, filters: Sequence[str]) -> None:
        self._target.unsubscribe(session_key, filters)

    def publish(self, topic: str, payload: bytes) -> None:
        self._target.publish(topic, payload)

    async def route(self, topic: str, payload: bytes, qos: int) -> int:
        return await self._target.route(topic, payload, qos)
