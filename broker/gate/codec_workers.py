"""Where the operator's Python codecs run: a few worker processes, never the broker's.

Python cannot stop a thread, so a codec that loops would hold a thread for good and a
codec that allocates would take the broker's memory. Each worker is a fresh interpreter
(multiprocessing's spawn: no fork of a threaded asyncio process) that loads the codecs
by their `module:attr` targets (`broker.codec_process`) under an address-space limit,
and answers one call at a time over a socket pair. A call that runs past the time
limit is answered 26002 at once and its worker is killed and replaced; so is one whose
worker runs out of memory or dies. The broker's end of each socket is a transport on
its event loop: a call is one write, its answer one callback, and nothing blocks.

One product's calls hold at most all live workers but one (its lane), and a worker
being replaced after one of its calls counts against its lane until the new one is
ready, so a codec that loops on every frame of one product leaves a worker for the
others. A product whose calls cost their worker several times in a row (time, memory,
death) has its calls refused at once (429) for a while that doubles with each further
one, so its devices cannot have an interpreter spawned per frame. Calls waiting for a
worker are bounded, per product and in all: past the bound a call is refused at once
(429).

Spawn starts a worker by importing the broker's main module as `__mp_main__` unless it
was run with `-m`: `gatehouse` and `python -m broker.cli` are both safe; a program of
your own that uses these workers must keep its start under `if __name__ == "__main__"`.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from typing import Any, cast

import orjson

from broker import codec_process
from broker.codec_process import CodecError
from broker.protocol import codes
from broker.protocol.scripts import MAX_OUTPUT, SCRIPT_FAILED, TIME_LIMIT_S, ScriptError

log = logging.getLogger(__name__)

DEFAULT_WORKERS = 2
# A worker's address space: the interpreter with orjson and a small codec takes about
# 30 MiB of it. (QuickJS's 16 MiB per script would not even start an interpreter.)
MEMORY_LIMIT = 256 * 1024 * 1024
MAX_WAITING = 1024  # calls waiting for the workers, all products together
MAX_WAITING_PER_PRODUCT = 256
START_TIMEOUT_S = 30.0  # a fresh interpreter importing the codecs, on a busy machine
RESTART_DELAY_S = 1.0  # before trying again to start a worker that could not start
# A product whose calls cost their worker this many times in a row is refused for
# BACKOFF_FIRST_S, then twice as long after each further one, up to BACKOFF_MAX_S; one
# call that returns ends it. (The first one is free: one bad frame is no pattern.)
BACKOFF_AFTER = 2
BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 60.0
_HEADER = struct.Struct("!i")  # multiprocessing.connection's frame length


class CodecFault(Exception):
    """The codec's own failure, for the caller to word: it `raised` (text: its message),
    `returned` what it may not (text: what), or is `missing` the method."""

    def __init__(self, kind: str, text: str) -> None:
        super().__init__(text)
        self.kind = kind
        self.text = text


_FAULTS = {
    codec_process.RAISED: "raised",
    codec_process.RETURNED: "returned",
    codec_process.MISSING: "missing",
}


@dataclass(slots=True)
class _Lane:
    """One product's calls: queued or running (`waiting`), running (`running`), workers
    being replaced after one of its calls (`replacing`), and how many of its calls in a
    row cost their worker (`strikes`, of the methods `struck`; refused until
    `refused_until`, monotonic)."""

    key: str
    waiting: int = 0
    running: int = 0
    replacing: int = 0
    strikes: int = 0
    struck: set[str] = field(default_factory=set)
    refused_until: float = 0.0

    @property
    def held(self) -> int:
        return self.running + self.replacing

    @property
    def idle(self) -> bool:
        return not (self.waiting or self.held or self.strikes)


@dataclass(slots=True)
class _Call:
    lane: _Lane
    method: str
    request: bytes  # the whole frame, length first
    future: asyncio.Future[Any]


class _Worker(asyncio.Protocol):
    """One worker process's life, seen from the broker: the process and our end of its
    socket pair (a transport once on the event loop), reading its frames as they come.
    A replaced worker is `killed` and what it still says is ignored."""

    def __init__(self, pool: CodecWorkers, index: int) -> None:
        self.pool = pool
        self.index = index
        self.process: BaseProcess | None = None
        self.sock: socket.socket | None = None  # ours, until a transport has it
        self.transport: asyncio.Transport | None = None
        self.state = "starting"  # starting | idle | busy | broken
        self.broken = ""  # why it could not start
        self.call: _Call | None = None
        self.charged: _Lane | None = None  # whose call this worker replaces one for
        self.timer: asyncio.TimerHandle | None = None
        self.sent_at = 0.0
        self.killed = False
        self._buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        while len(buffer) >= _HEADER.size and not self.killed:
            (size,) = _HEADER.unpack_from(buffer)
            if size < 0:  # a frame over 2 GiB: a worker never sends one
                self.pool._failed(self, "its worker process answered nonsense")
                return
            end = _HEADER.size + size
            if len(buffer) < end:
                return
            frame = bytes(buffer[_HEADER.size : end])
            del buffer[:end]
            self.pool._frame(self, frame)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.killed:
            self.pool._failed(self, f"the codec's worker process died ({self.how_it_ended()})")

    def send(self, call: _Call, time_limit: float) -> None:
        assert self.transport is not None
        self.state, self.call = "busy", call
        self.sent_at = time.monotonic()
        self.transport.write(call.request)
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(time_limit, self.pool._timed_out, self)

    def stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def kill(self) -> None:
        """Kill the process (it holds nothing worth a goodbye) and close our end."""
        self.killed = True
        self.stop_timer()
        if self.transport is not None:
            self.transport.abort()
        elif self.sock is not None:
            self.sock.close()
        if self.process is not None and self.process.pid is not None:
            with contextlib.suppress(OSError, ValueError):
                self.process.kill()
            _reap(self.process)

    def how_it_ended(self) -> str:
        process = self.process
        code = None
        if process is not None:
            with contextlib.suppress(ValueError):
                process.join(0.1)  # its socket closed: it is ending, or has ended
                code = process.exitcode
        if code is None:
            return "it closed its socket"
        if code < 0:
            with contextlib.suppress(ValueError):
                return f"killed by {signal.Signals(-code).name}"
        return f"exit code {code}"


def _reap(process: BaseProcess, tries: int = 40) -> None:
    """Collect a killed process's exit, without waiting on the event loop for it."""
    with contextlib.suppress(ValueError):
        if process.exitcode is not None:
            return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # no loop (at exit): SIGKILL cannot be refused, so wait briefly
        with contextlib.suppress(ValueError):
            process.join(1)
        return
    if tries:
        loop.call_later(0.05, _reap, process, tries - 1)


class CodecWorkers:
    """The worker processes for the codecs `targets` names (name -> module:attr)."""

    def __init__(
        self,
        targets: Mapping[str, str],
        workers: int = DEFAULT_WORKERS,
        *,
        time_limit: float = TIME_LIMIT_S,
        memory_limit: int = MEMORY_LIMIT,
        max_waiting: int = MAX_WAITING,
    ) -> None:
        self.targets = dict(targets)
        self.names = frozenset(self.targets)
        self.time_limit = time_limit
        self.memory_limit = memory_limit
        self.max_waiting = max_waiting
        self.offers: dict[str, frozenset[str]] = {}  # codec -> the methods it has
        self._context = multiprocessing.get_context("spawn")
        self._pool = [_Worker(self, i) for i in range(max(1, workers))]
        self._queue: collections.deque[_Call] = collections.deque()
        self._lanes: dict[str, _Lane] = {}
        self._closed = False
        self._attached = False  # the first workers' sockets are on the event loop
        self._attach_lock = asyncio.Lock()
        self._booting: set[asyncio.Future[None]] = set()

    # -- life -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start every worker and wait until each has loaded the codecs (at serve start,
        so that a target that cannot load stops serve with its reason). CodecError if one
        cannot."""
        atexit.register(self.close)
        try:
            for worker in self._pool:
                self._spawn(worker)
            for worker in self._pool:
                assert worker.sock is not None
                worker.sock.settimeout(START_TIMEOUT_S)
                self._ready(worker, _read_blocking(worker))
                worker.sock.setblocking(False)
        except BaseException:
            self.close()
            raise
        pids = [w.process.pid for w in self._pool if w.process is not None]
        log.info("codec workers started (pids %s)", ", ".join(map(str, pids)))

    def close(self) -> None:
        """Kill every worker and fail every call still waiting."""
        self._closed = True
        for worker in self._pool:
            call, worker.call = worker.call, None
            self._uncharge(worker)
            worker.kill()
            if call is not None:
                _settle(call, ScriptError(SCRIPT_FAILED, "the codec workers stopped"))
        self._fail_waiting("the codec workers stopped")

    def _spawn(self, worker: _Worker) -> None:
        ours, theirs = socket.socketpair()
        args = (theirs, self.targets, self.memory_limit, MAX_OUTPUT, os.getpid())
        process = self._context.Process(
            target=codec_process.main,
            args=args,
            name=f"gatehouse-codec-{worker.index}",
            daemon=True,
        )
        worker.process, worker.sock = process, ours
        try:
            process.start()
        finally:
            theirs.close()  # the worker has its own copy: its death is our end's EOF

    def _ready(self, worker: _Worker, first: bytes | None) -> None:
        """The worker's first frame: it loaded the codecs, or why not (CodecError)."""
        if first is not None and first.startswith(codec_process.LOAD_FAILED):
            raise CodecError(first[1:].decode(errors="replace"))
        if first is None or not first.startswith(codec_process.READY):
            why = worker.how_it_ended()
            raise CodecError(f"a codec worker ended while loading the codecs ({why})")
        offers = orjson.loads(first[1:])
        self.offers = {name: frozenset(methods) for name, methods in offers.items()}
        worker.state = "idle"

    async def _attach(self, worker: _Worker) -> None:
        """Our end of the worker's socket onto the event loop, with `worker` reading it."""
        sock, worker.sock = worker.sock, None
        assert sock is not None
        await asyncio.get_running_loop().connect_accepted_socket(lambda: worker, sock=sock)

    def _replace(self, old: _Worker, charged: _Lane | None = None) -> None:
        """A new worker in `old`'s place, started in the background; counted against
        `charged`'s lane until it is ready (or cannot start)."""
        old.kill()
        if self._closed:
            return
        worker = self._pool[old.index] = _Worker(self, old.index)
        if charged is not None:
            worker.charged = charged
            charged.replacing += 1
        task = asyncio.ensure_future(self._boot(worker))
        self._booting.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(self._booting.discard)

    async def _boot(self, worker: _Worker) -> None:
        """Spawn the worker; its first frame, or its end, says how it went (`_frame`)."""
        loop = asyncio.get_running_loop()
        worker.timer = loop.call_later(START_TIMEOUT_S, self._start_timed_out, worker)
        try:
            self._spawn(worker)
            await self._attach(worker)
        except OSError as exc:
            self._broken(worker, f"cannot start a codec worker: {exc}")

    def _start_timed_out(self, worker: _Worker) -> None:
        if worker.state == "starting" and not worker.killed:
            self._broken(worker, f"a codec worker did not start within {START_TIMEOUT_S:g} s")

    def _broken(self, worker: _Worker, why: str) -> None:
        """A worker that could not start: said, and tried again after a pause. While none
        is running, calls are answered at once rather than left waiting."""
        log.error("codec worker %d: %s", worker.index, why)
        self._uncharge(worker)
        worker.kill()
        worker.state, worker.broken = "broken", why
        if not self._closed:
            asyncio.get_running_loop().call_later(RESTART_DELAY_S, self._replace, worker)
        self._dispatch()

    # -- calls ----------------------------------------------------------------------------

    async def call(
        self, lane: str, codec: str, method: str, *args: Any, raw: bytes | None = None
    ) -> Any:
        """`codec.method(*args[, raw])` on a worker: the JSON value it returned (decode,
        transform) or its bytes (encode). CodecFault for the codec's own failure;
        ScriptError 26002 for a limit or a worker that died, 429 if too many wait."""
        if self._closed:
            raise ScriptError(SCRIPT_FAILED, "the codec workers stopped")
        if not self._attached:
            async with self._attach_lock:
                for worker in self._pool:
                    if worker.sock is not None and worker.transport is None:
                        await self._attach(worker)
                self._attached = True
        if len(self._queue) >= self.max_waiting:
            raise ScriptError(
                codes.TOO_MANY_REQUESTS, f"{self.max_waiting} codec calls are waiting; try again"
            )
        state = self._lanes.get(lane)
        if state is None:
            state = self._lanes[lane] = _Lane(lane)
        refused = self._refusal(state)
        if refused is not None:
            raise refused
        if state.waiting >= MAX_WAITING_PER_PRODUCT:
            raise ScriptError(
                codes.TOO_MANY_REQUESTS,
                f"{state.waiting} calls of this product's codec are waiting; try again",
            )
        body = orjson.dumps([method, codec, list(args), raw is not None]) + b"\n" + (raw or b"")
        future = asyncio.get_running_loop().create_future()
        state.waiting += 1
        self._queue.append(_Call(state, method, _HEADER.pack(len(body)) + body, future))
        try:
            self._dispatch()
            return await future
        finally:
            state.waiting -= 1
            self._forget_idle(state)

    def _forget_idle(self, lane: _Lane) -> None:
        if lane.idle and self._lanes.get(lane.key) is lane:
            del self._lanes[lane.key]

    def _refusal(self, lane: _Lane) -> ScriptError | None:
        """Why `lane`'s calls are refused now (it keeps costing workers), if they are."""
        left = lane.refused_until - time.monotonic()
        if left <= 0:
            return None
        return ScriptError(
            codes.TOO_MANY_REQUESTS,
            f"this product's codec cost its worker {lane.strikes} times in a row;"
            f" its calls are refused for {left:.1f} s more",
        )

    def _strike(self, lane: _Lane, method: str) -> None:
        """One more call of `lane` that cost its worker: past BACKOFF_AFTER in a row, its
        calls are refused for a while, those waiting too."""
        lane.strikes += 1
        lane.struck.add(method)
        if lane.strikes < BACKOFF_AFTER:
            return
        pause = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** (lane.strikes - BACKOFF_AFTER))
        lane.refused_until = time.monotonic() + pause
        log.warning(
            "codec calls of product %s refused for %g s: %d in a row cost their worker",
            lane.key,
            pause,
            lane.strikes,
        )
        refused = self._refusal(lane)
        keep: collections.deque[_Call] = collections.deque()
        for call in self._queue:
            if call.lane is lane:
                _settle(call, refused)
            else:
                keep.append(call)
        self._queue = keep

    def _uncharge(self, worker: _Worker) -> None:
        """The replacement `worker` is ready or broken: its lane may use workers again."""
        lane, worker.charged = worker.charged, None
        if lane is not None:
            lane.replacing -= 1
            self._forget_idle(lane)

    def _dispatch(self) -> None:
        """Give waiting calls to idle workers, first come first served, except that one
        product may hold at most all live workers but one (a worker being replaced after
        its call is held by it)."""
        if all(w.state == "broken" for w in self._pool):
            self._fail_waiting(f"no codec worker is running: {self._pool[0].broken}")
            return
        for worker in self._pool:
            if worker.state != "idle" or worker.transport is None:
                continue
            call = self._next_call()
            if call is None:
                return
            call.lane.running += 1
            worker.send(call, self.time_limit)

    def _next_call(self) -> _Call | None:
        live = sum(1 for worker in self._pool if worker.state != "broken")
        per_product = max(1, live - 1)  # with one worker, the products share it
        for call in self._queue:
            if call.future.done():  # its caller stopped waiting
                continue
            if call.lane.held < per_product:
                self._queue.remove(call)
                return call
        while self._queue and self._queue[0].future.done():
            self._queue.popleft()
        return None

    def _fail_waiting(self, why: str) -> None:
        while self._queue:
            _settle(self._queue.popleft(), ScriptError(SCRIPT_FAILED, why))

    # -- what workers say -----------------------------------------------------------------

    def _frame(self, worker: _Worker, frame: bytes) -> None:
        if worker.state == "starting":
            worker.stop_timer()
            try:
                self._ready(worker, frame)
            except CodecError as exc:
                self._broken(worker, str(exc))
                return
            self._uncharge(worker)
            self._dispatch()
        elif worker.state == "busy":
            outcome, replace = self._outcome(frame)
            self._finish(worker, outcome, replace=replace)
        else:
            self._failed(worker, "its worker process spoke out of turn")

    def _timed_out(self, worker: _Worker) -> None:
        if worker.call is not None and not worker.killed:
            limit = f"{self.time_limit * 1000:g} ms"
            self._finish(
                worker, ScriptError(SCRIPT_FAILED, f"codec ran past its time limit of {limit}")
            )

    def _failed(self, worker: _Worker, why: str) -> None:
        """The worker ended or broke: its call (if any) is answered, and it is replaced."""
        if worker.state == "starting":
            self._broken(worker, f"a codec worker ended while loading the codecs: {why}")
        elif worker.call is not None:
            self._finish(worker, ScriptError(SCRIPT_FAILED, why))
        else:
            log.warning("codec worker %d replaced: %s", worker.index, why)
            self._replace(worker)

    def _finish(self, worker: _Worker, outcome: Any, *, replace: bool = True) -> None:
        call, worker.call = worker.call, None
        assert call is not None
        worker.stop_timer()
        lane = call.lane
        lane.running -= 1
        _settle(call, outcome)
        if replace:
            took = (time.monotonic() - worker.sent_at) * 1000
            log.warning("codec worker %d replaced after %.0f ms: %s", worker.index, took, outcome)
            self._replace(worker, charged=lane)
            self._strike(lane, call.method)
        else:
            if call.method in lane.struck:  # it returned (the reply to a loop does not)
                lane.strikes, lane.refused_until = 0, 0.0
                lane.struck.clear()
            worker.state = "idle"
        self._forget_idle(lane)  # if its caller stopped waiting
        self._dispatch()

    def _outcome(self, frame: bytes) -> tuple[Any, bool]:
        """(the call's result or its exception, whether the worker must be replaced)."""
        status, body = frame[:1], frame[1:]
        if status == codec_process.JSON:
            return orjson.loads(body), False
        if status == codec_process.BYTES:
            return body, False
        if status == codec_process.MEMORY:
            limit = f"{self.memory_limit // (1024 * 1024)} MiB"
            return ScriptError(SCRIPT_FAILED, f"codec ran past its memory limit of {limit}"), True
        kind = _FAULTS.get(status)
        if kind is None:
            return ScriptError(SCRIPT_FAILED, "the codec's worker process answered nonsense"), True
        return CodecFault(kind, body.decode(errors="replace")), False


def _settle(call: _Call, outcome: Any) -> None:
    if call.future.done():  # its caller stopped waiting
        return
    with contextlib.suppress(RuntimeError):  # at exit, its loop may be closed
        if isinstance(outcome, BaseException):
            call.future.set_exception(outcome)
        else:
            call.future.set_result(outcome)


def _read_blocking(worker: _Worker) -> bytes | None:
    """A worker's first frame, blocking (at serve start, before anyone is served)."""
    assert worker.sock is not None
    try:
        head = _exactly(worker.sock, _HEADER.size)
        if head is None:
            return None
        (size,) = _HEADER.unpack(head)
        return _exactly(worker.sock, size) if size >= 0 else None
    except TimeoutError:
        raise CodecError(
            f"a codec worker did not load the codecs within {START_TIMEOUT_S:g} s"
        ) from None


def _exactly(sock: socket.socket, size: int) -> bytes | None:
    buffer = bytearray()
    while len(buffer) < size:
        chunk = sock.recv(size - len(buffer))
        if not chunk:
            return None
        buffer += chunk
    return bytes(buffer)
