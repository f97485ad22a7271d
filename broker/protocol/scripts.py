"""Alibaba's data-parsing scripts (docs/protocol.md, section 12), run in QuickJS.

A script is JavaScript that defines `rawDataToProtocol(bytes)` (the device's bytes, as an
array of integers -128 to 127 like Java's byte[], to an Alink request or reply object),
`protocolToRawData(json)` (an Alink downlink or reply object to an array of integers 0
to 255) and optionally `transformPayload(topic, bytes)`. `PayloadScript` loads one and
calls it with a time limit and a memory limit; every way a script can fail is a
`ScriptError` with the code Alibaba's platform uses for it.

Pure apart from the engine: the broker and the simulators run scripts through this one
module, so a simulated device sees exactly what the platform would do. A QuickJS
runtime must only ever be used from the thread that made it (the engine crashes
otherwise), so a `PayloadScript` belongs to the thread that built it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
import quickjs  # type: ignore[import-untyped]  # the package ships no stubs

# Reply codes of the script family (Alibaba IoT Platform, data parsing).
SCRIPT_EMPTY = 26001  # no script, or it returned nothing (null, undefined, empty)
SCRIPT_FAILED = 26002  # it does not compile, threw, or ran past a limit
SCRIPT_NO_FUNCTION = 26006  # the function the platform needs is not defined
SCRIPT_BAD_RESULT = 26007  # it returned something of the wrong shape
NO_METHOD = 6450  # the decoded object names no method the platform knows

DECODE = "rawDataToProtocol"
ENCODE = "protocolToRawData"
TRANSFORM = "transformPayload"
REQUIRED = (DECODE, ENCODE)

TIME_LIMIT_S = 0.1  # per call; a frame decoder needs well under a millisecond
MEMORY_LIMIT = 16 * 1024 * 1024  # per script, all its calls together
STACK_LIMIT = 256 * 1024
MAX_SOURCE = 64 * 1024  # bytes of script text
MAX_OUTPUT = 512 * 1024  # bytes of JSON or raw bytes a call may return (EnOS's payload limit)

# Our entry point, evaluated before the script so that it cannot be replaced: calls a
# global function by name with JSON-encoded arguments and answers its result as JSON
# (null when the function is missing; typed arrays become plain arrays).
_ENTRY = """(function (g) {
  return function (name, args) {
    var f = g[name];
    if (typeof f !== 'function') return null;
    var out = f.apply(g, JSON.parse(args));
    if (out !== null && typeof out === 'object' && ArrayBuffer.isView(out)) {
      out = Array.prototype.slice.call(out);
    }
    var text = JSON.stringify(out === undefined ? null : out);
    return text === undefined ? 'null' : text;
  };
})(globalThis)"""


class ScriptError(Exception):
    """A script that cannot do what was asked; `code` is the reply code for it."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def check_source(source: str) -> None:
    """Refuse what is not worth loading: nothing, or more than MAX_SOURCE bytes."""
    if not source.strip():
        raise ScriptError(SCRIPT_EMPTY, "the script is empty")
    size = len(source.encode())
    if size > MAX_SOURCE:
        raise ScriptError(SCRIPT_FAILED, f"the script is {size} bytes; the limit is {MAX_SOURCE}")


def signed_bytes(raw: bytes) -> list[int]:
    """Bytes as Alibaba hands them to a script: two's complement, -128 to 127."""
    return memoryview(raw).cast("b").tolist()


class PayloadScript:
    """One product's script in a QuickJS context of its own. Not thread-safe: use it
    only from the thread that created it."""

    def __init__(
        self,
        source: str,
        *,
        time_limit: float = TIME_LIMIT_S,
        memory_limit: int = MEMORY_LIMIT,
    ) -> None:
        check_source(source)
        self.source = source
        self.time_limit = time_limit
        self.memory_limit = memory_limit
        self._context, self._entry = self._load()

    def _load(self) -> tuple[quickjs.Context, quickjs.Object]:
        context = quickjs.Context()
        context.set_memory_limit(self.memory_limit)
        context.set_time_limit(self.time_limit)
        context.set_max_stack_size(STACK_LIMIT)
        entry = context.eval(_ENTRY)
        try:
            context.eval(self.source)
        except (quickjs.JSException, quickjs.StackOverflow) as exc:
            raise self._failure(exc, "loading the script") from None
        return context, entry

    def defines(self, name: str) -> bool:
        return bool(
            self._context.eval(f"typeof globalThis[{orjson.dumps(name).decode()}] === 'function'")
        )

    def missing(self) -> list[str]:
        """The functions the platform needs that the script does not define."""
        return [name for name in REQUIRED if not self.defines(name)]

    def call(self, name: str, *args: Any) -> Any:
        """`name(*args)` in the script, arguments and result passed as JSON."""
        try:
            text = self._entry(name, orjson.dumps(args).decode())
        except (quickjs.JSException, quickjs.StackOverflow) as exc:
            raise self._failure(exc, name) from None
        if text is None:
            raise ScriptError(SCRIPT_NO_FUNCTION, f"the script defines no function {name}")
        if not isinstance(text, str) or len(text) > MAX_OUTPUT:
            raise ScriptError(SCRIPT_BAD_RESULT, f"{name} returned more than {MAX_OUTPUT} bytes")
        return orjson.loads(text)

    def decode(self, raw: bytes) -> dict[str, Any]:
        """rawDataToProtocol: the device's bytes to an Alink request or reply object."""
        return as_object(self.call(DECODE, signed_bytes(raw)), DECODE)

    def transform(self, topic: str, raw: bytes) -> dict[str, Any]:
        """transformPayload: a custom topic's bytes to a JSON object."""
        return as_object(self.call(TRANSFORM, topic, signed_bytes(raw)), TRANSFORM)

    def encode(self, message: Mapping[str, Any]) -> bytes:
        """protocolToRawData: an Alink downlink or reply object to the device's bytes."""
        return as_bytes(self.call(ENCODE, dict(message)), ENCODE)

    def _failure(self, exc: Exception, where: str) -> ScriptError:
        """What went wrong, as a ScriptError; a context that hit a limit is replaced,
        so a script that ran out of time or memory starts clean on its next call."""
        text = str(exc).strip()
        first = text.splitlines()[0] if text else type(exc).__name__
        if isinstance(exc, quickjs.StackOverflow) or "stack overflow" in first:
            why = "overflowed its stack"
        elif "interrupted" in first:
            why = f"ran past its time limit of {self.time_limit * 1000:g} ms"
        elif first in ("null", "InternalError: out of memory") or "Failed obtaining" in first:
            # QuickJS cannot build an error object once memory is gone: it throws null.
            why = f"ran past its memory limit of {self.memory_limit // (1024 * 1024)} MiB"
        else:
            return ScriptError(SCRIPT_FAILED, f"{where}: {first[:300]}")
        if hasattr(self, "_context"):
            self._context, self._entry = self._load()
        return ScriptError(SCRIPT_FAILED, f"{where} {why}")


def as_bytes(out: Any, name: str) -> bytes:
    """A script's result that must be bytes: an array of integers 0 to 255 (-128 to -1
    are taken as two's complement)."""
    if out is None or out == []:
        raise ScriptError(SCRIPT_EMPTY, f"{name} returned nothing")
    if not isinstance(out, list):
        raise ScriptError(
            SCRIPT_BAD_RESULT, f"{name} must return an array of bytes, not {_kind(out)}"
        )
    for index, value in enumerate(out):
        if isinstance(value, bool) or not isinstance(value, int) or not -128 <= value <= 255:
            raise ScriptError(
                SCRIPT_BAD_RESULT,
                f"{name} returned {value!r:.20} at [{index}]; bytes are integers 0 to 255",
            )
    return bytes(value & 0xFF for value in out)


def as_object(out: Any, name: str) -> dict[str, Any]:
    """A script's result that must be a non-empty JSON object."""
    if out is None or out == {}:
        raise ScriptError(SCRIPT_EMPTY, f"{name} returned nothing")
    if not isinstance(out, dict):
        raise ScriptError(SCRIPT_BAD_RESULT, f"{name} must return an object, not {_kind(out)}")
    return out


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "an object"
