"""Where product scripts run: worker threads of their own, off the event loop.

A QuickJS runtime may only be used by the thread that made it, so each worker is one
thread that owns the compiled scripts it has run (an LRU of them, by product). A call
goes to the least busy worker; the engine's own time limit ends a looping script, so a
worker is never held longer than that by one call, and the broker's loop never at all.
One product's calls spread over at most all workers but one (its lane), so a script that
loops on every frame slows only its own product's devices. Calls waiting are
bounded, per product and in all: past the bound a call is refused at once (429).
"""

from __future__ import annotations

import asyncio
import collections
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from broker.protocol import codes
from broker.protocol.scripts import (
    MEMORY_LIMIT,
    TIME_LIMIT_S,
    PayloadScript,
    ScriptError,
)

T = TypeVar("T")

DEFAULT_WORKERS = 2
MAX_WAITING = 1024  # calls queued for the workers, all products together
MAX_WAITING_PER_PRODUCT = 256
MAX_LOADED = 512  # compiled scripts a worker keeps (about 60 KiB each, idle)


class DaemonThread:
    """One daemon thread that runs calls in turn, answering each on the caller's event
    loop. A daemon, unlike an executor's worker, so that a worker busy when serve ends
    (the engine's time limit bounds each call) does not hold up the process's exit."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def submit(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._put((fn, args, loop, future))
        return future

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run `fn(*args)` on the thread, answering no one."""
        self._put((fn, args, None, None))

    def _put(self, call: _Call) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()
        self._calls.put(call)

    def _run(self) -> None:
        while (call := self._calls.get()) is not None:
            fn, args, loop, future = call
            try:
                result, failure = fn(*args), None
            except Exception as exc:  # the call's own fault: handed to its caller
                result, failure = None, exc
            if loop is not None and future is not None:
                loop.call_soon_threadsafe(_settle, future, result, failure)

    def close(self) -> None:
        self._calls.put(None)


_Call = tuple[
    Callable[..., Any],
    tuple[Any, ...],
    asyncio.AbstractEventLoop | None,
    asyncio.Future[Any] | None,
]


def _settle(future: asyncio.Future[Any], result: Any, failure: Exception | None) -> None:
    if future.done():  # the caller stopped waiting
        return
    if failure is not None:
        future.set_exception(failure)
    else:
        future.set_result(result)


class _Worker:
    def __init__(self, index: int, time_limit: float, memory_limit: int) -> None:
        self.thread = DaemonThread(f"gatehouse-script-{index}")
        self.busy = 0  # calls submitted and not yet answered (touched on the loop only)
        self.time_limit = time_limit
        self.memory_limit = memory_limit
        # Only ever touched on this worker's thread.
        self._loaded: collections.OrderedDict[str, tuple[str, PayloadScript]] = (
            collections.OrderedDict()
        )

    def run(self, key: str, version: str, source: str, op: Callable[[PayloadScript], T]) -> T:
        """On the worker's thread: the product's compiled script (compiled now if it is
        new or changed), and `op` on it."""
        found = self._loaded.get(key)
        if found is None or found[0] != version:
            script = PayloadScript(
                source, time_limit=self.time_limit, memory_limit=self.memory_limit
            )
            self._loaded[key] = (version, script)
            while len(self._loaded) > MAX_LOADED:
                self._loaded.popitem(last=False)
        else:
            script = found[1]
        self._loaded.move_to_end(key)
        return op(script)

    def forget(self, key: str) -> None:
        self._loaded.pop(key, None)


@dataclass(slots=True)
class _Lane:
    """One product's calls in progress, and on which workers."""

    waiting: int = 0
    on: dict[int, int] = field(default_factory=dict)  # worker index -> its calls there


class ScriptRunner:
    def __init__(
        self,
        workers: int = DEFAULT_WORKERS,
        *,
        time_limit: float = TIME_LIMIT_S,
        memory_limit: int = MEMORY_LIMIT,
        max_waiting: int = MAX_WAITING,
    ) -> None:
        self.time_limit = time_limit
        self.memory_limit = memory_limit
        self.max_waiting = max_waiting
        self._workers = [_Worker(i, time_limit, memory_limit) for i in range(max(1, workers))]
        self._per_product = max(1, len(self._workers) - 1)  # workers one product may hold
        self._lanes: dict[str, _Lane] = {}

    async def run(self, key: str, version: str, source: str, op: Callable[[PayloadScript], T]) -> T:
        """`op` on product `key`'s script (at `version`), on a worker; ScriptError if the
        script fails or too many calls wait."""
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane()
        if lane.waiting >= MAX_WAITING_PER_PRODUCT:
            raise ScriptError(
                codes.TOO_MANY_REQUESTS,
                f"{lane.waiting} calls of this product's script are waiting; try again",
            )
        index = self._pick(lane)
        worker = self._workers[index]
        lane.waiting += 1
        lane.on[index] = lane.on.get(index, 0) + 1
        worker.busy += 1
        try:
            return await worker.thread.submit(worker.run, key, version, source, op)
        finally:
            worker.busy -= 1
            lane.waiting -= 1
            lane.on[index] -= 1
            if not lane.on[index]:
                del lane.on[index]
            if not lane.waiting:
                del self._lanes[key]

    async def once(self, source: str, op: Callable[[PayloadScript], T]) -> T:
        """`op` on a script compiled for this call only (uploads and dry runs)."""
        worker = self._workers[self._pick(None)]

        def fresh() -> T:
            script = PayloadScript(
                source, time_limit=self.time_limit, memory_limit=self.memory_limit
            )
            return op(script)

        worker.busy += 1
        try:
            return await worker.thread.submit(fresh)
        finally:
            worker.busy -= 1

    def _pick(self, lane: _Lane | None) -> int:
        """The least busy worker the call may take: once a product's calls are on all
        workers but one, one of those. ScriptError if too many calls wait in all."""
        if sum(w.busy for w in self._workers) >= self.max_waiting:
            raise ScriptError(
                codes.TOO_MANY_REQUESTS,
                f"{self.max_waiting} script calls are waiting already; try again",
            )
        allowed = list(range(len(self._workers)))
        if lane is not None and len(lane.on) >= self._per_product:
            allowed = list(lane.on)
        return min(allowed, key=lambda i: self._workers[i].busy)

    def forget(self, key: str) -> None:
        """Drop the product's compiled script on every worker (it was deleted)."""
        for worker in self._workers:
            worker.thread.post(worker.forget, key)

    def close(self) -> None:
        for worker in self._workers:
            worker.thread.close()
