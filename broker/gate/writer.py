"""The sinks, written behind in group commits: presence, the device log and latest values,
and commands' rows (each awaited by its sender, as a post awaits its batch).

The broker loop only appends to in-memory buffers; one task writes them to the store
in a single transaction per batch (aiosqlite runs it on its own thread). A message
whose answer claims it was stored asks `committed()` for the future of the batch its
rows are in, and answers only when that batch has committed: while one batch is being
written the next one fills, so batches grow with the load (group commit). Rows nobody
waits for (presence) are written within `interval`.

When the store cannot write, the batch's futures fail with `StorageUnavailable` (the
devices get an error reply and no PUBACK), `stats` and the log say so once, and the
next batch tries again, so writing resumes by itself when the disk does.

Every buffer is bounded: presence and latest values coalesce per device, and the log
drops its oldest rows when a flush cannot keep up (counted in `stats`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from broker.clock import SYSTEM_CLOCK, Clock
from registry import Command, StorageUnavailable
from registry.store import LatestRow, LogRow, PresenceRow, TelemetryStore

log = logging.getLogger("gatehouse.writer")


@dataclass(slots=True)
class WriterStats:
    flushes: int = 0
    rows: int = 0
    dropped_log: int = 0  # log rows dropped because the buffer was full
    failures: int = 0  # batches the store could not write (their senders were told)
    failing: bool = False  # the last batch failed: the store cannot write now
    last_error: str = ""  # why the last failed batch failed
    failing_since: float | None = None  # epoch seconds
    flush_seconds: float = 0.0  # spent committing batches (and telling the observers)


@dataclass(frozen=True, slots=True)
class WriterConfig:
    interval: float = 0.25  # seconds before rows nobody waits for are written
    retry_interval: float = 0.1  # seconds between batches while the store is failing
    log_keep: int = 100_000  # rows the device log keeps, newest first
    log_payload_max: int = 16 * 1024  # bytes of each payload the log keeps
    max_pending_log: int = 20_000  # log rows buffered between flushes
    # Bytes of notes buffered between flushes (custom-topic messages are whole, up to
    # the payload limit each, unlike the log's rows).
    max_pending_note_bytes: int = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Note:
    """A message for applications only, stored elsewhere (a command's result)."""

    product_key: str
    device_key: str
    ts: int
    kind: str
    data: dict[str, Any]
    size: int = 0  # about how many bytes `data` holds, for the buffer's bound


@dataclass(frozen=True, slots=True)
class CommittedBatch:
    """What one batch stored, for the application streams: every measurepoint value as
    posted (not coalesced like `latest`), the device log rows, and the notes."""

    points: Sequence[LatestRow]
    log: Sequence[LogRow]
    notes: Sequence[Note] = field(default_factory=tuple)


# Awaited after a batch commits and before its senders are answered; raising
# StorageUnavailable fails the batch's answers (the rows stay stored: at least once).
BatchObserver = Callable[[CommittedBatch], Awaitable[None]]


class WriteBehind:
    def __init__(
        self,
        store: TelemetryStore,
        config: WriterConfig | None = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.telemetry = store  # the narrow interface it writes through
        self.clock = clock
        self.config = config or WriterConfig()
        self.stats = WriterStats()
        self._presence: dict[tuple[str, str], PresenceRow] = {}
        self._log: collections.deque[LogRow] = collections.deque()
        self._latest: dict[tuple[str, str, str], LatestRow] = {}
        # Commands' rows, in order, each awaited by its sender (bounded by the commands
        # open, which broker/gate/commands.py bounds).
        self._commands: list[tuple[Command, bool]] = []
        self._task: asyncio.Task[None] | None = None
        self._since_prune = 0
        # The future of the batch now filling, made when somebody first waits on it.
        self._next: asyncio.Future[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self.observers: list[BatchObserver] = []
        # Kept only while somebody observes; bounded like the log.
        self._points: collections.deque[LatestRow] = collections.deque()
        self._notes: collections.deque[Note] = collections.deque()
        self._note_bytes = 0

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
        row = (product_key, device_key, identifier, value, ts)
        if held is None or held[4] <= ts:
            self._latest[key] = row
        if self.observers:
            if len(self._points) >= self.config.max_pending_log:
                self._points.popleft()
                self.stats.dropped_log += 1
            self._points.append(row)

    def note(self, note: Note) -> None:
        """A message for the observers of the next batch (no row of its own here)."""
        if not self.observers:
            return
        self._notes.append(note)
        self._note_bytes += note.size
        while len(self._notes) > self.config.max_pending_log or (
            self._note_bytes > self.config.max_pending_note_bytes and len(self._notes) > 1
        ):
            self._note_bytes -= self._notes.popleft().size
            self.stats.dropped_log += 1

    def command(self, command: Command, *, new: bool) -> asyncio.Future[None]:
        """A command's row (`new`: inserted, else its state updated) for the next batch;
        the future of that batch, as `committed()` gives it."""
        self._commands.append((command, new))
        return self.committed()

    @property
    def running(self) -> bool:
        """Whether batches are being written: what is buffered now will be."""
        return self._task is not None and not self._stopping

    def committed(self) -> asyncio.Future[None]:
        """Done when every row buffered so far is stored; `StorageUnavailable` if not.

        Shared by every caller of one batch: await it through `asyncio.shield`.
        """
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
        self._wake.set()
        return self._next

    async def sync(self) -> None:
        """Return once everything buffered before the call is stored (a barrier for
        scripts and tests); `StorageUnavailable` if it cannot be."""
        await asyncio.shield(self.committed())

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
        """Write what is buffered and stop; raises `StorageUnavailable` if it cannot."""
        if self._task is not None:
            # Not cancelled: a batch being written finishes and its waiters hear of it.
            self._stopping = True
            self._wake.set()
            with contextlib.suppress(Exception):
                await self._task
            self._task = None
        await self.flush()

    async def _run(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.config.interval)
            self._wake.clear()
            try:
                await self.flush()
            except StorageUnavailable:
                # Told to every waiter and in the stats; try again after a pause rather
                # than spin on a full disk.
                await asyncio.sleep(self.config.retry_interval)
            except Exception:
                self.stats.failures += 1
                log.exception("writing device data behind failed")

    async def flush(self) -> None:
        """Write one batch: what is buffered now. Its waiters learn how it went."""
        presence, log_rows, latest = (
            list(self._presence.values()),
            list(self._log),
            list(self._latest.values()),
        )
        batch = CommittedBatch(list(self._points), log_rows, list(self._notes))
        commands, self._commands = self._commands, []
        done, self._next = self._next, None
        self._presence.clear()
        self._log.clear()
        self._latest.clear()
        self._points.clear()
        self._notes.clear()
        self._note_bytes = 0
        if not (presence or log_rows or latest or batch.notes or commands):
            if done is not None:
                done.set_result(None)
            return
        started = self.clock.monotonic()
        try:
            await self.telemetry.write_behind(presence, log_rows, latest, commands)
            await self._tell(batch)
        except Exception as exc:
            failure = exc if isinstance(exc, StorageUnavailable) else StorageUnavailable(str(exc))
            self._failed(failure, len(presence) + len(log_rows) + len(latest))
            # Presence is a state, not a message: kept to converge once writing resumes
            # (unless newer news of the device arrived meanwhile). Messages were refused.
            for row in presence:
                self._presence.setdefault((row[3], row[4]), row)
            if done is not None and not done.done():
                done.set_exception(failure)
                done.exception()  # retrieved: a batch nobody awaited is not an error
            raise
        if done is not None and not done.done():
            done.set_result(None)
        self._recovered()
        self.stats.flush_seconds += self.clock.monotonic() - started
        self.stats.flushes += 1
        self.stats.rows += len(presence) + len(log_rows) + len(latest)
        self._since_prune += len(log_rows)
        if self._since_prune >= self.config.log_keep // 10:
            self._since_prune = 0
            try:
                await self.telemetry.prune_log(self.config.log_keep)
            except StorageUnavailable as exc:
                log.warning("pruning the device log failed: %s", exc.msg)

    async def _tell(self, batch: CommittedBatch) -> None:
        for observer in self.observers:
            try:
                await observer(batch)
            except StorageUnavailable:
                raise
            except Exception:
                # A bug in a stream must not fail the devices' posts.
                log.exception("an observer of the write-behind failed")

    def _failed(self, exc: StorageUnavailable, rows: int) -> None:
        self.stats.failures += 1
        self.stats.last_error = exc.msg
        if not self.stats.failing:
            self.stats.failing = True
            self.stats.failing_since = self.clock.wall_ms() / 1000
            log.error(
                "the registry cannot write (%s): %d rows not stored; devices get error"
                " replies and no PUBACK, and the API answers 503, until it can",
                exc.msg,
                rows,
            )

    def _recovered(self) -> None:
        if self.stats.failing:
            now = self.clock.wall_ms() / 1000
            since = self.stats.failing_since or now
            log.warning(
                "the registry writes again, after %.1f s (%d batches not stored)",
                now - since,
                self.stats.failures,
            )
            self.stats.failing = False
            self.stats.failing_since = None
