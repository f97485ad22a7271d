"""Codecs for Custom data-format products: raw bytes to a TSL request, and a reply back.

A codec is any object with `decode(raw: bytes) -> dict` (a request envelope: `id`,
`method`, `params`) and `encode(reply: dict) -> bytes`. Gatehouse finds codecs by name:
the built-in ones below, those that installed packages register under the
`gatehouse.codecs` entry-point group, and `gatehouse serve --codec NAME=module:attr`.
A class is instantiated once; a module or instance is used as it is.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import orjson

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
