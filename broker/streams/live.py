"""Live streams (Server-Sent Events): the newest messages, kept in memory.

Each message gets an id `{boot}-{seq}`; the feed keeps the last `replay` of them so that
a stream that reconnects with `Last-Event-ID` resumes where it left off, as long as that
id is still held and gatehouse has not restarted (`boot` tells). Each open stream has a
bounded queue; when its reader falls behind, the oldest are dropped and counted.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from broker.streams.messages import AppMessage

Filter = Callable[[AppMessage], bool]


@dataclass(frozen=True, slots=True)
class LiveConfig:
    replay: int = 10_000  # messages held for Last-Event-ID
    queue: int = 1_000  # messages one stream may fall behind by
    max_streams: int = 100  # open at once


@dataclass(slots=True, eq=False)  # each open stream is its own: hashed by identity
class Listener:
    org_id: str
    wants: Filter
    limit: int
    queue: collections.deque[tuple[int, AppMessage]] = field(default_factory=collections.deque)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    dropped: int = 0
    sent: int = 0

    def put(self, seq: int, message: AppMessage) -> None:
        if len(self.queue) >= self.limit:
            self.queue.popleft()
            self.dropped += 1
        self.queue.append((seq, message))
        self.ready.set()


class LiveFeed:
    def __init__(self, config: LiveConfig | None = None) -> None:
        self.config = config or LiveConfig()
        self.boot = format(int(time.time() * 1000), "x")
        self._seq = 0
        self._held: collections.deque[tuple[int, AppMessage]] = collections.deque(
            maxlen=self.config.replay
        )
        self.listeners: set[Listener] = set()
        self.dropped = 0  # by streams gone since start

    def event_id(self, seq: int) -> str:
        return f"{self.boot}-{seq}"

    def publish(self, messages: Iterable[AppMessage]) -> None:
        for message in messages:
            self._seq += 1
            self._held.append((self._seq, message))
            for listener in self.listeners:
                if listener.org_id == message.org_id and listener.wants(message):
                    listener.put(self._seq, message)

    def open(self, org_id: str, wants: Filter, last_event_id: str | None) -> Listener | None:
        """A listener with what it missed since `last_event_id`; None when too many are open."""
        if len(self.listeners) >= self.config.max_streams:
            return None
        listener = Listener(org_id, wants, self.config.queue)
        after = self._resume_after(last_event_id)
        if after is not None:
            for seq, message in self._held:
                if seq > after and message.org_id == org_id and wants(message):
                    listener.put(seq, message)
        self.listeners.add(listener)
        return listener

    def close(self, listener: Listener) -> None:
        self.listeners.discard(listener)
        self.dropped += listener.dropped

    def _resume_after(self, last_event_id: str | None) -> int | None:
        """The seq to resume after; 0 (everything held) for an id of another run."""
        if not last_event_id:
            return None
        boot, _, seq = last_event_id.partition("-")
        if boot != self.boot or not seq.isdigit():
            return 0
        return int(seq)
