"""What runs inside a codec worker process (started by `broker.gate.codec_workers`): the
operator's Python codecs, loaded by their `module:attr` targets, each call answered in
turn over a socket to the broker, under an address-space limit.

This module imports only the standard library and orjson: a worker is a fresh
interpreter (multiprocessing's spawn), and everything it imports counts against its
memory limit and its start-up time (`broker.gate` alone is 0.8 s and 45 MiB).

The wire: each message is one `multiprocessing.connection` frame (a 4-byte big-endian
length, then the bytes). A request is a JSON header `[method, codec, args, with_raw]`,
a newline, then the raw bytes (`decode(raw)`, `encode(message)`, `transform(topic,
raw)`: the JSON args first, then the raw bytes when `with_raw`). An answer is one status
byte and a body: below.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import resource
import signal
import sys
from collections.abc import Mapping
from multiprocessing.connection import Connection
from typing import Any, Protocol, runtime_checkable

import orjson

# The first message of a worker: it loaded every codec (body: JSON {name: [methods]}),
# or it could not (body: the reason).
READY = b"+"
LOAD_FAILED = b"!"
# An answer's status byte.
JSON = b"J"  # decode or transform returned this JSON value (the broker checks its shape)
BYTES = b"B"  # encode returned these bytes
RAISED = b"R"  # the codec raised: body is its message
RETURNED = b"W"  # it returned what cannot be sent (body: what it was)
MISSING = b"N"  # the codec has no such method
MEMORY = b"M"  # it ran out of memory; the worker exits after saying so

METHODS = ("decode", "encode", "transform")
PARENT_CHECK_S = 0.5  # how often a worker looks for its broker (besides PDEATHSIG)


class CodecError(ValueError):
    """A codec that cannot be loaded, or a --codec option that names none."""


@runtime_checkable
class Codec(Protocol):
    def decode(self, raw: bytes) -> dict[str, Any]: ...

    def encode(self, reply: dict[str, Any]) -> bytes: ...


def load_target(target: str) -> Codec:
    """The codec `module:attr` names (a class is instantiated once)."""
    module_name, colon, attr = target.partition(":")
    if not colon or not module_name or not attr:
        raise CodecError(f"{target!r} is not module:attribute")
    try:
        found: Any = getattr(importlib.import_module(module_name), attr)
        if isinstance(found, type):
            found = found()
    except MemoryError:
        raise
    except Exception as exc:  # the operator's module: any failure to load is said plainly
        raise CodecError(f"cannot load codec {target!r}: {exc}") from None
    if not isinstance(found, Codec):
        raise CodecError(f"{target!r} has no decode(raw) and encode(reply)")
    return found


def main(
    sock: Any, targets: Mapping[str, str], memory_limit: int, max_output: int, parent: int
) -> None:
    """A worker's life: limits first, then the codecs, then calls until the broker goes."""
    _die_with(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the broker's to handle
    resource.setrlimit(
        resource.RLIMIT_AS, (memory_limit, resource.getrlimit(resource.RLIMIT_AS)[1])
    )
    conn = Connection(sock.detach())
    try:
        codecs = {name: load_target(target) for name, target in targets.items()}
    except CodecError as exc:
        conn.send_bytes(LOAD_FAILED + str(exc).encode())
        return
    except MemoryError:
        conn.send_bytes(
            LOAD_FAILED + f"loading the codecs needs more than {_mib(memory_limit)}".encode()
        )
        return
    offers = {
        name: [m for m in METHODS if callable(getattr(c, m, None))] for name, c in codecs.items()
    }
    conn.send_bytes(READY + orjson.dumps(offers))
    while True:
        try:
            request = conn.recv_bytes()
        except (EOFError, OSError):  # the broker closed its end or is gone
            return
        answer = _answer(codecs, request, max_output)
        conn.send_bytes(answer)
        if answer[:1] == MEMORY:
            # What ran out may have left the heap in any state: start clean instead.
            sys.stdout.flush()
            os._exit(0)


def _answer(codecs: Mapping[str, Codec], request: bytes, max_output: int) -> bytes:
    header, _, raw = request.partition(b"\n")
    method, name, args, with_raw = orjson.loads(header)
    function = getattr(codecs.get(name), method, None) if method in METHODS else None
    if not callable(function):
        return MISSING + f"{name!r} has no {method}".encode()
    try:
        result = function(*args, raw) if with_raw else function(*args)
        if method == "encode":
            return _bytes(result, max_output)
        return _json(result, max_output)
    except MemoryError:
        pass  # answered below, once the except block has let go of what was allocated
    except Exception as exc:  # the codec's own failure: its message, for the reply
        return RAISED + str(exc).encode(errors="replace")[:1000]
    return MEMORY


def _bytes(result: Any, max_output: int) -> bytes:
    if not isinstance(result, bytes | bytearray):
        return RETURNED + type(result).__name__.encode()
    if len(result) > max_output:
        return RETURNED + f"more than {max_output} bytes".encode()
    return BYTES + bytes(result)


def _json(result: Any, max_output: int) -> bytes:
    try:
        body = orjson.dumps(result)
    except TypeError:
        return RETURNED + type(result).__name__.encode()
    if len(body) > max_output:
        return RETURNED + f"more than {max_output} bytes of JSON".encode()
    return JSON + body


def _die_with(parent: int) -> None:
    """End this worker when the broker ends, even in the middle of a codec that never
    returns: the kernel's parent-death signal on Linux, and a periodic look elsewhere.
    (An idle worker also ends when the broker's end of the socket closes.)"""
    if sys.platform == "linux":
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            pr_set_pdeathsig = 1
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)

    def check(signum: int, frame: Any) -> None:
        if os.getppid() != parent:
            os._exit(1)

    signal.signal(signal.SIGALRM, check)
    signal.setitimer(signal.ITIMER_REAL, PARENT_CHECK_S, PARENT_CHECK_S)
    check(0, None)  # the broker may have gone before the signal was set


def _mib(size: int) -> str:
    return f"{size // (1024 * 1024)} MiB"
