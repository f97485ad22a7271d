"""The sinks, written behind: presence, the device log and latest values, in batches.

The broker loop only appends to in-memory buffers; one task flushes them to SQLite
every `interval` seconds in a single transaction (aiosqlite runs it on its own
thread). Every buffer is bounded: presence and latest values coalesce per device, and
the log drops its oldest rows when a flush cannot keep up (counted in `stats`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from dataclasses import dataclass

from registry import SqliteStore
from registry.sqlite import LatestRow, LogRow, PresenceRow

log = logging.getLogger("gatehouse.writer")


@dataclass(slots=True)
class WriterStats:
    flushes: int = 0
    rows: int = 0
    dropped_log: int = 0  # log rows dropped because the buffer was full
    failures: int = 0


@dataclass(frozen=True, slots=True)
class WriterConfig:
    interval: float = 0.25  # seconds between flushes
    log_keep: int = 100_000  # rows the device log keeps, newest first
    log_payload_max: int = 16 * 1024  # bytes of each payload the log keeps
    max_pending_log: int = 20_000  # log rows buffered between flushes


class WriteBehind:
    def __init__(self, store: SqliteStore, config: WriterConfig | None = None) -> None:
        self.store = store
        self.config = config or WriterConfig()
        self.stats = WriterStats()
        self._presence: dict[tuple[str, str], PresenceRow] = {}
        self._log: collections.deque[LogRow] = collections.deque()
        self._latest: dict[tuple[str, str, str], LatestRow] = {}
        self._task: asyncio.Task[None] | None = None
        self._since_prune = 0

    # -- what the broker loop calls: no I/O ----------------------------------------------

    def presence(
        self, product_key: str, device_key: str, online: bool, now_ms: int, activated: bool
    ) -> None:
        key = (product_key, device_key)
        held = self._presence.get(key)
        # Coalesced per device; a first activation in the same batch is not forgotten.
        activated_at = now_ms if activated else (held[2] if held is not None else None)
        self._presence[key] = (int(online), now_ms, activated_at, product_key, device_key)

    def event(
        self,
        product_key: str,
        device_key: str,
        now_ms: int,
        kind: str,
        *,
        topic: str = "",
        payload: bytes | None = None,
        code: int | None = None,
        detail: str = "",
    ) -> None:
        if payload is not None and len(payload) > self.config.log_payload_max:
            detail = detail or f"payload truncated from {len(payload)} bytes"
            payload = payload[: self.config.log_payload_max]
        if len(self._log) >= self.config.max_pending_log:
            self._log.popleft()
            self.stats.dropped_log += 1
        self._log.append((product_key, device_key, now_ms, kind, topic, payload, code, detail))

    def latest(
        self, product_key: str, device_key: str, identifier: str, value: str, ts: int
    ) -> None:
        key = (product_key, device_key, identifier)
        held = self._latest.get(key)
        if held is None or held[4] <= ts:
            self._latest[key] = (product_key, device_key, identifier, value, ts)

    def forget(self, product_key: str, device_key: str) -> None:
        """Drop what is buffered for a device that has just been deleted."""
        self._presence.pop((product_key, device_key), None)
        self._log = collections.deque(
            row for row in self._log if (row[0], row[1]) != (product_key, device_key)
        )
        for key in [k for k in self._latest if k[:2] == (product_key, device_key)]:
            del self._latest[key]

    # -- the flushing task -----------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="gatehouse-writer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.config.interval)
            try:
                await self.flush()
            except Exception:
                self.stats.failures += 1
                log.exception("writing device data behind failed; the batch is lost")

    async def flush(self) -> None:
        presence, log_rows, latest = (
            list(self._presence.values()),
            list(self._log),
            list(self._latest.values()),
        )
        self._presence.clear()
        self._log.clear()
        self._latest.clear()
        if not (presence or log_rows or latest):
            return
        await self.store.write_behind(presence, log_rows, latest)
        self.stats.flushes += 1
        self.stats.rows += len(presence) + len(log_rows) + len(latest)
        self._since_prune += len(log_rows)
        if self._since_prune >= self.config.log_keep // 10:
            self._since_prune = 0
            await self.store.prune_log(self.config.log_keep)
