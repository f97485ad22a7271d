"""A Python codec with the optional `transform(topic, raw)` (Alibaba's transformPayload
for custom topics), loaded by tests/test_custom_topics.py's server with `--codec`."""

from __future__ import annotations

from typing import Any

import orjson


class HexCodec:
    """Raw JSON both ways; a custom topic's bytes become their hex and the topic."""

    def decode(self, raw: bytes) -> dict[str, Any]:
        body: dict[str, Any] = orjson.loads(raw)
        return body

    def encode(self, message: dict[str, Any]) -> bytes:
        return orjson.dumps(message)

    def transform(self, topic: str, raw: bytes) -> dict[str, Any]:
        return {"topic": topic, "hex": raw.hex()}
