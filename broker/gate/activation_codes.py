"""Activation codes in memory: each product's codes not yet taken, and the code each
device holds until when. Admission asks here, with no database round trip; what it
decides (a code taken, a device inactive again) is written through the registry after.

Expiry is one timer at the earliest end among the codes held. When it fires, each
device whose code has ended takes the next code left, or, with none, is handed to
`on_exhausted` (the credential cache: inactive again, and disconnected if online). One
firing handles at most EXPIRY_BATCH devices and comes back at once for the rest.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from broker.clock import SYSTEM_CLOCK, Clock
from registry.activation import ActivationCode

log = logging.getLogger("gatehouse.activation")

DeviceId = tuple[str, str]
EXPIRY_BATCH = 1000


class CodeLedger(Protocol):
    """Where decisions are written (the registry)."""

    async def consume_activation_code(
        self, code: str, device_key: str, consumed_at: int, expires_at: int
    ) -> bool: ...
    async def deactivate_device(self, product_key: str, device_key: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Held:
    code: str
    expires_at: int  # wall milliseconds


class ActivationCodes:
    def __init__(self, clock: Clock = SYSTEM_CLOCK) -> None:
        self.clock = clock
        self.free: dict[str, deque[ActivationCode]] = {}  # by product, in purchase order
        self.coded: set[str] = set()  # products that have had codes: held to them
        self.held: dict[DeviceId, Held] = {}
        self.ledger: CodeLedger | None = None
        self.on_exhausted: Callable[[DeviceId], None] = lambda key: None
        self._ends: list[tuple[int, DeviceId, str]] = []  # a heap of (expires_at, device, code)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: int | None = None
        self._writes: set[asyncio.Task[Any]] = set()

    def load(self, codes: Iterable[ActivationCode]) -> None:
        """The stored codes (oldest first): free ones queue, each device holds its newest."""
        for code in codes:
            self.coded.add(code.productKey)
            if code.deviceKey is None or code.expiresAt is None:
                self.free.setdefault(code.productKey, deque()).append(code)
                continue
            key = (code.productKey, code.deviceKey)
            current = self.held.get(key)
            if current is None or current.expires_at < code.expiresAt:
                self._hold(key, Held(code.code, code.expiresAt))
        self._arm()

    def add(self, codes: Sequence[ActivationCode]) -> None:
        """Codes purchased."""
        for code in codes:
            self.coded.add(code.productKey)
            self.free.setdefault(code.productKey, deque()).append(code)

    def governs(self, product_key: str) -> bool:
        return product_key in self.coded

    def admissible(self, key: DeviceId, now_ms: int) -> bool:
        """Whether the device holds a code that has not ended, or one is left to take."""
        if not self.governs(key[0]):
            return True
        held = self.held.get(key)
        return (held is not None and held.expires_at > now_ms) or bool(self.free.get(key[0]))

    def take(self, key: DeviceId, now_ms: int) -> bool:
        """The device activates or connects: it takes a code unless it holds one that
        has not ended. False if it needed one and none is left."""
        if not self.governs(key[0]):
            return True
        held = self.held.get(key)
        if held is not None and held.expires_at > now_ms:
            return True
        free = self.free.get(key[0])
        if not free:
            return False
        code = free.popleft()
        expires_at = now_ms + code.validSeconds * 1000
        self._hold(key, Held(code.code, expires_at))
        self._write(self._consume(code.code, key[1], now_ms, expires_at))
        self._arm()
        return True

    def forget_device(self, key: DeviceId) -> None:
        self.held.pop(key, None)  # its heap entry is stale now, skipped when it comes up

    def forget_product(self, product_key: str) -> None:
        self.free.pop(product_key, None)
        self.coded.discard(product_key)

    def left(self, product_key: str) -> int:
        return len(self.free.get(product_key, ()))

    # -- expiry --------------------------------------------------------------------------

    def _hold(self, key: DeviceId, held: Held) -> None:
        self.held[key] = held
        heapq.heappush(self._ends, (held.expires_at, key, held.code))

    def _arm(self) -> None:
        """Set the timer for the earliest end, if it is not set for that already."""
        if not self._ends:
            return
        first = self._ends[0][0]
        if self._timer is not None and self._timer_at is not None and self._timer_at <= first:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a unit test of admission): ends are checked at connect
        if self._timer is not None:
            self._timer.cancel()
        delay = max(first - self.clock.wall_ms(), 0) / 1000
        self._timer = loop.call_later(delay, self._expire)
        self._timer_at = first

    def _expire(self) -> None:
        self._timer = self._timer_at = None
        now = self.clock.wall_ms()
        handled = 0
        while self._ends and self._ends[0][0] <= now and handled < EXPIRY_BATCH:
            _, key, code = heapq.heappop(self._ends)
            held = self.held.get(key)
            if held is None or held.code != code:
                continue  # replaced or forgotten since
            handled += 1
            if not self.take(key, now):
                del self.held[key]
                log.info("%s/%s: its activation code ended and none is left", *key)
                self.on_exhausted(key)
        self._arm()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._timer_at = None

    # -- writes --------------------------------------------------------------------------

    async def _consume(self, code: str, device_key: str, now_ms: int, expires_at: int) -> None:
        if self.ledger is not None:
            await self.ledger.consume_activation_code(code, device_key, now_ms, expires_at)

    def deactivated(self, key: DeviceId) -> None:
        """Write that the device is inactive again."""
        if self.ledger is not None:
            self._write(self.ledger.deactivate_device(*key))

    def _write(self, write: Coroutine[Any, Any, Any]) -> None:
        try:
            task = asyncio.get_running_loop().create_task(write)
        except RuntimeError:
            write.close()  # no loop: nothing to write to (unit tests without a ledger)
            return
        self._writes.add(task)
        task.add_done_callback(self._written)

    def _written(self, task: asyncio.Task[Any]) -> None:
        self._writes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("an activation code could not be recorded: %s", task.exception())
