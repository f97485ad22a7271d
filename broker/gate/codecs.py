"""Codecs for Custom data-format products: raw bytes to a TSL request, and a reply or a
command back to bytes.

A codec is any object with `decode(raw: bytes) -> dict` (a request or reply envelope:
`id`, `method`, `params` or `code`) and `encode(message: dict) -> bytes` (a reply or a
command). Gatehouse finds codecs by name: the built-in ones below, those that installed
packages register under the `gatehouse.codecs` entry-point group, and `gatehouse serve
--codec NAME=module:attr`. A class is instantiated once; a module or instance is used as
it is. A codec may also offer `transform(topic: str, raw: bytes) -> dict`, Alibaba's
`transformPayload` for custom topics (`/{pk}/{dk}/user/...?_sn=default`); one without
it answers those with 26006. The built-in ones run in the broker's process; every
other codec runs in worker processes (`broker.gate.codec_workers`), which load it by its
`module:attr` target.

`PayloadCodecs` is what the router and the command service use: a product's uploaded
JavaScript (Alibaba's contract, run by `broker.gate.payload_scripts`) if it has one, else the
codec its settings name. Either way a failure is a `ScriptError` with a reply code, and
no call runs on the event loop for longer than the scripts' time limit.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import orjson

from broker.codec_process import Codec as Codec  # the contract, for codecs' authors
from broker.codec_process import CodecError as CodecError
from broker.gate.codec_workers import DEFAULT_WORKERS, CodecFault, CodecWorkers
from broker.gate.credentials import ProductCredential
from broker.gate.payload_scripts import ScriptRunner
from broker.protocol import codes
from broker.protocol.scripts import (
    MAX_OUTPUT,
    SCRIPT_BAD_RESULT,
    SCRIPT_EMPTY,
    SCRIPT_FAILED,
    SCRIPT_NO_FUNCTION,
    PayloadScript,
    ScriptError,
    as_object,
)
from registry import Registry
from registry.scripts import ProductScript

T = TypeVar("T")

ENTRY_POINT_GROUP = "gatehouse.codecs"


class JsonCodec:
    """Raw bytes that are a UTF-8 JSON request; the reply goes back as JSON."""

    def decode(self, raw: bytes) -> dict[str, Any]:
        body = orjson.loads(raw)
        if not isinstance(body, dict):
            raise ValueError("raw payload is JSON but not an object")
        return body

    def encode(self, reply: dict[str, Any]) -> bytes:
        return orjson.dumps(reply)


BUILT_IN: dict[str, Codec] = {"json": JsonCodec()}


class Codecs(dict[str, Codec]):
    """What serve loaded: the codecs that run in the broker's process (the built-in ones),
    by name, and `workers`, the processes that run the others (their names in
    `workers.names`)."""

    def __init__(self, inline: Mapping[str, Codec], workers: CodecWorkers | None = None) -> None:
        super().__init__(inline)
        self.workers = workers


def codec_targets(configured: Mapping[str, str]) -> dict[str, str]:
    """The codecs to run in workers, name -> module:attr: entry points, then
    configuration (later names win)."""
    targets: dict[str, str] = {}
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        targets[entry.name] = entry.value
    for name, target in configured.items():
        targets[name] = target
    for target in targets.values():
        module_name, colon, attr = target.partition(":")
        if not colon or not module_name or not attr:
            raise CodecError(f"{target!r} is not module:attribute")
    return targets


def load_codecs(configured: Mapping[str, str], workers: int = DEFAULT_WORKERS) -> Codecs:
    """Built-ins in the broker's process; the entry points' and the configured ones in
    worker processes, started now: CodecError if a worker cannot load one."""
    targets = codec_targets(configured)
    inline = {name: codec for name, codec in BUILT_IN.items() if name not in targets}
    if not targets:
        return Codecs(inline)
    pool = CodecWorkers(targets, workers)
    pool.start()
    return Codecs(inline, pool)


def parse_codec_option(text: str) -> tuple[str, str]:
    """`NAME=module:attr` from the command line."""
    name, eq, target = text.partition("=")
    if not eq or not name or ":" not in target:
        raise CodecError(f"--codec wants NAME=module:attribute, not {text!r}")
    return name, target


class PayloadCodecs:
    """Each Custom product's way between bytes and JSON: its script, else its codec."""

    def __init__(
        self,
        registry: Registry,
        codecs: Mapping[str, Codec],
        runner: ScriptRunner | None = None,
    ) -> None:
        self.registry = registry
        self.codecs = codecs
        # The operator's codecs are someone's code: they run in worker processes, so a
        # slow, looping or greedy one costs Custom devices a reply code, never the broker.
        self.workers = codecs.workers if isinstance(codecs, Codecs) else None
        self.runner = runner or ScriptRunner()
        self._scripts: dict[str, ProductScript] = {}
        self._loaded = False
        self._load_lock = asyncio.Lock()
        self._changed_while_loading: set[str] = set()
        registry.script_listeners.append(self._script_changed)

    def _script_changed(self, product_key: str, script: ProductScript | None) -> None:
        self._changed_while_loading.add(product_key)
        if script is None:
            self._scripts.pop(product_key, None)
            self.runner.forget(product_key)
        else:
            self._scripts[product_key] = script

    async def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        async with self._load_lock:
            if self._loaded:
                return
            self._changed_while_loading.clear()
            for script in await self.registry.all_product_scripts():
                if script.productKey not in self._changed_while_loading:
                    self._scripts[script.productKey] = script
            self._loaded = True

    async def way(self, product: ProductCredential) -> str | None:
        """`"script"`, the codec's name, or None for bytes that pass through as they are."""
        if product.product.settings.dataFormat != "Custom":
            return None
        await self._ensure_loaded()
        if product.product.productKey in self._scripts:
            return "script"
        return product.product.settings.codec

    async def decode(self, product: ProductCredential, raw: bytes) -> dict[str, Any]:
        script = await self._script(product)
        if script is not None:
            return await self._run(script, lambda s: s.decode(raw))
        name = self._codec_name(product)
        try:
            decoded = await self._call(product, name, "decode", raw=raw)
        except CodecFault as exc:  # a codec is user code: any failure is a reply
            what = "decoded to" if exc.kind == "returned" else "cannot decode:"
            raise ScriptError(codes.PAYLOAD_FORMAT_ERROR, f"codec {name!r} {what} {exc}") from None
        if not isinstance(decoded, dict):
            raise ScriptError(
                codes.PAYLOAD_FORMAT_ERROR, f"codec {name!r} decoded to {type(decoded).__name__}"
            )
        return decoded

    async def encode(self, product: ProductCredential, message: dict[str, Any]) -> bytes:
        script = await self._script(product)
        if script is not None:
            return await self._run(script, lambda s: s.encode(message))
        name = self._codec_name(product)
        try:
            encoded = await self._call(product, name, "encode", message)
        except CodecFault as exc:
            if exc.kind != "returned":
                raise ScriptError(
                    codes.SERVER_ERROR, f"codec {name!r} cannot encode: {exc}"
                ) from None
            encoded = None  # not bytes, or too many of them: answered below
        if not isinstance(encoded, bytes | bytearray) or len(encoded) > MAX_OUTPUT:
            raise ScriptError(
                codes.SERVER_ERROR, f"codec {name!r} must encode to at most {MAX_OUTPUT} bytes"
            )
        return bytes(encoded)

    async def transform(self, product: ProductCredential, topic: str, raw: bytes) -> dict[str, Any]:
        """A custom topic's bytes to a JSON object: the script's transformPayload, else
        the codec's optional `transform(topic, raw)`."""
        script = await self._script(product)
        if script is not None:
            return await self._run(script, lambda s: s.transform(topic, raw))
        if product.product.settings.dataFormat != "Custom" or not product.product.settings.codec:
            raise ScriptError(SCRIPT_EMPTY, "the product has no script to parse custom topics")
        name = self._codec_name(product)
        try:
            out = await self._call(product, name, "transform", topic, raw=raw)
        except CodecFault as exc:
            if exc.kind == "missing":
                raise ScriptError(
                    SCRIPT_NO_FUNCTION, f"codec {name!r} has no transform(topic, raw)"
                ) from None
            if exc.kind == "returned":
                raise ScriptError(
                    SCRIPT_BAD_RESULT, f"codec {name!r} transform returned {exc}"
                ) from None
            raise ScriptError(SCRIPT_FAILED, f"codec {name!r} cannot transform: {exc}") from None
        return as_object(out, f"codec {name!r} transform")

    async def _run(self, script: ProductScript, op: Callable[[PayloadScript], T]) -> T:
        """`op` on the product's script (at its version), on the script workers."""
        return await self.runner.run(script.productKey, script.version, script.scriptContent, op)

    async def _script(self, product: ProductCredential) -> ProductScript | None:
        await self._ensure_loaded()
        return self._scripts.get(product.product.productKey)

    def _codec_name(self, product: ProductCredential) -> str:
        name = product.product.settings.codec
        if name is None or not (name in self.codecs or self._in_workers(name)):
            raise ScriptError(codes.SERVER_ERROR, f"codec {name!r} is not loaded")
        return name

    def _in_workers(self, name: str) -> bool:
        return self.workers is not None and name in self.workers.names

    async def _call(
        self,
        product: ProductCredential,
        name: str,
        method: str,
        *args: Any,
        raw: bytes | None = None,
    ) -> Any:
        """`method(*args[, raw])` of the named codec: on a worker for the operator's,
        inline for ours. CodecFault for the codec's own failure; ScriptError for a limit."""
        workers = self.workers
        if workers is not None and name in workers.names:
            key = product.product.productKey  # one product's calls keep to their lane
            return await workers.call(key, name, method, *args, raw=raw)
        function = getattr(self.codecs[name], method, None)
        if not callable(function):
            raise CodecFault("missing", f"codec {name!r} has no {method}")
        try:
            # Ours, and cheap: no hop.
            return function(*args, raw) if raw is not None else function(*args)
        except Exception as exc:
            raise CodecFault("raised", str(exc)) from None

    def close(self) -> None:
        self.runner.close()
        if self.workers is not None:
            self.workers.close()
