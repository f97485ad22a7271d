"""Codecs for Custom data-format products: raw bytes to a TSL request, and a reply or a
command back to bytes.

A codec is any object with `decode(raw: bytes) -> dict` (a request or reply envelope:
`id`, `method`, `params` or `code`) and `encode(message: dict) -> bytes` (a reply or a
command). Gatehouse finds codecs by name: the built-in ones below, those that installed
packages register under the `gatehouse.codecs` entry-point group, and `gatehouse serve
--codec NAME=module:attr`. A class is instantiated once; a module or instance is used as
it is. A codec may also offer `transform(topic: str, raw: bytes) -> dict`, Alibaba's
`transformPayload` for custom topics (`/{pk}/{dk}/user/...?_sn=default`); one without
it answers those with 26006.

`PayloadCodecs` is what the router and the command service use: a product's uploaded
JavaScript (Alibaba's contract, run by `broker.gate.payload_scripts`) if it has one, else the
codec its settings name. Either way a failure is a `ScriptError` with a reply code, and
no call runs on the event loop for longer than the scripts' time limit.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import importlib.metadata
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import orjson

from broker.gate.credentials import ProductCredential
from broker.gate.payload_scripts import DaemonThread, ScriptRunner
from broker.protocol import codes
from broker.protocol.scripts import (
    MAX_OUTPUT,
    SCRIPT_EMPTY,
    SCRIPT_FAILED,
    SCRIPT_NO_FUNCTION,
    TIME_LIMIT_S,
    ScriptError,
    as_object,
)
from registry import Registry
from registry.scripts import ProductScript

ENTRY_POINT_GROUP = "gatehouse.codecs"


@runtime_checkable
class Codec(Protocol):
    def decode(self, raw: bytes) -> dict[str, Any]: ...

    def encode(self, reply: dict[str, Any]) -> bytes: ...


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


class CodecError(ValueError):
    pass


def _load(target: str) -> Codec:
    module_name, colon, attr = target.partition(":")
    if not colon or not module_name or not attr:
        raise CodecError(f"{target!r} is not module:attribute")
    try:
        found: Any = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise CodecError(f"cannot load codec {target!r}: {exc}") from None
    if isinstance(found, type):
        found = found()
    if not isinstance(found, Codec):
        raise CodecError(f"{target!r} has no decode(raw) and encode(reply)")
    return found


def load_codecs(configured: Mapping[str, str]) -> dict[str, Codec]:
    """Built-ins, then entry points, then configuration (later names win)."""
    codecs: dict[str, Codec] = dict(BUILT_IN)
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        codecs[entry.name] = _load(entry.value)
    for name, target in configured.items():
        codecs[name] = _load(target)
    return codecs


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
        self.runner = runner or ScriptRunner()
        self._scripts: dict[str, ProductScript] = {}
        self._loaded = False
        self._load_lock = asyncio.Lock()
        self._changed_while_loading: set[str] = set()
        registry.script_listeners.append(self._script_changed)
        # Python codecs other than the built-in ones are someone's code: they run on a
        # thread of their own, so a slow one delays Custom devices, never the broker.
        self._python = DaemonThread("gatehouse-codec")

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
            return await self.runner.run(
                script.productKey, script.version, script.scriptContent, lambda s: s.decode(raw)
            )
        name, codec = self._codec(product)
        try:
            decoded = await self._call_codec(codec, codec.decode, raw)
        except ScriptError:
            raise
        except Exception as exc:  # a codec is user code: any failure is a reply
            raise ScriptError(
                codes.PAYLOAD_FORMAT_ERROR, f"codec {name!r} cannot decode: {exc}"
            ) from None
        if not isinstance(decoded, dict):
            raise ScriptError(
                codes.PAYLOAD_FORMAT_ERROR, f"codec {name!r} decoded to {type(decoded).__name__}"
            )
        return decoded

    async def encode(self, product: ProductCredential, message: dict[str, Any]) -> bytes:
        script = await self._script(product)
        if script is not None:
            return await self.runner.run(
                script.productKey,
                script.version,
                script.scriptContent,
                lambda s: s.encode(message),
            )
        name, codec = self._codec(product)
        try:
            encoded = await self._call_codec(codec, codec.encode, message)
        except ScriptError:
            raise
        except Exception as exc:
            raise ScriptError(codes.SERVER_ERROR, f"codec {name!r} cannot encode: {exc}") from None
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
            return await self.runner.run(
                script.productKey,
                script.version,
                script.scriptContent,
                lambda s: s.transform(topic, raw),
            )
        if product.product.settings.dataFormat != "Custom" or not product.product.settings.codec:
            raise ScriptError(SCRIPT_EMPTY, "the product has no script to parse custom topics")
        name, codec = self._codec(product)
        method = getattr(codec, "transform", None)
        if not callable(method):
            raise ScriptError(SCRIPT_NO_FUNCTION, f"codec {name!r} has no transform(topic, raw)")
        try:
            out = await self._call_codec(codec, functools.partial(method, topic), raw)
        except ScriptError:
            raise
        except Exception as exc:
            raise ScriptError(SCRIPT_FAILED, f"codec {name!r} cannot transform: {exc}") from None
        return as_object(out, f"codec {name!r} transform")

    async def _script(self, product: ProductCredential) -> ProductScript | None:
        await self._ensure_loaded()
        return self._scripts.get(product.product.productKey)

    def _codec(self, product: ProductCredential) -> tuple[str, Codec]:
        name = product.product.settings.codec
        codec = self.codecs.get(name) if name is not None else None
        if name is None or codec is None:
            raise ScriptError(codes.SERVER_ERROR, f"codec {name!r} is not loaded")
        return name, codec

    async def _call_codec(self, codec: Codec, method: Any, arg: Any) -> Any:
        if any(codec is built_in for built_in in BUILT_IN.values()):
            return method(arg)  # ours, and cheap: no thread hop
        future = self._python.submit(method, arg)
        try:
            return await asyncio.wait_for(future, TIME_LIMIT_S)
        except TimeoutError:
            raise ScriptError(
                SCRIPT_FAILED, f"codec ran past its time limit of {TIME_LIMIT_S * 1000:g} ms"
            ) from None

    def close(self) -> None:
        self.runner.close()
        self._python.close()
