"""Application messages: one per measurepoint value, event, online, offline, command
result or custom-topic message, built from what a write-behind batch stored. Command
results and custom-topic messages come whole as the batch's notes (the message log
keeps only the first 16 KiB of a payload); the rest from its rows."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from broker.gate.writer import CommittedBatch
from broker.protocol import parse_device_topic
from broker.protocol.topics import SYS, Uplink, classify_enos_uplink

OK_CODES = (0, 200)  # EnOS answers 200, Alink 200 too; 0 when a codec says so
LIVE_ONLY_KINDS = ("refused",)  # for the console's device page: never retained


@dataclass(frozen=True, slots=True)
class AppMessage:
    org_id: str
    product_key: str
    device_key: str
    kind: str  # one of registry.streams.KINDS, or of LIVE_ONLY_KINDS
    ts: int  # epoch ms: when the device said it happened, or when gatehouse saw it
    body: dict[str, Any]

    @property
    def key(self) -> str:
        return f"{self.product_key}/{self.device_key}"

    def json(self) -> str:
        return orjson.dumps(self.body).decode()


# (product_key, device_key) -> (org id, asset id), or None for a device not known
Lookup = Callable[[str, str], tuple[str, str] | None]


def _message(
    lookup: Lookup, pk: str, dk: str, kind: str, ts: int, fields: dict[str, Any]
) -> AppMessage | None:
    found = lookup(pk, dk)
    if found is None:
        return None
    org_id, asset_id = found
    body = {
        "kind": kind,
        "orgId": org_id,
        "productKey": pk,
        "deviceKey": dk,
        "assetId": asset_id,
        "time": ts,
        **fields,
    }
    return AppMessage(org_id, pk, dk, kind, ts, body)


def from_batch(batch: CommittedBatch, lookup: Lookup) -> Iterator[AppMessage]:
    """The batch's messages, in the order they were buffered within each sort."""
    for pk, dk, identifier, value, ts in batch.points:
        message = _message(
            lookup,
            pk,
            dk,
            "measurepoints",
            ts,
            {"pointId": identifier, "value": orjson.loads(value)},
        )
        if message is not None:
            yield message
    for pk, dk, ts, kind, topic, payload, code, detail in batch.log:
        message = None
        if kind in ("online", "offline"):
            message = _message(lookup, pk, dk, kind, ts, {"reason": detail})
        elif kind == "up" and code in OK_CODES and payload:
            message = _event(lookup, pk, dk, ts, topic, payload)
        elif kind == "refused" or (kind == "up" and code not in (None, *OK_CODES)):
            # A refused CONNECT or an uplink answered with an error: live streams only
            # (no subscription or webhook can ask for a kind outside KINDS).
            fields = {"code": code, "reason": detail, "topic": topic}
            message = _message(lookup, pk, dk, "refused", ts, fields)
        if message is not None:
            yield message
    for note in batch.notes:
        message = _message(lookup, note.product_key, note.device_key, note.kind, note.ts, note.data)
        if message is not None:
            yield message


def _event(
    lookup: Lookup, pk: str, dk: str, ts: int, topic: str, payload: bytes
) -> AppMessage | None:
    parsed = parse_device_topic(topic)
    if parsed is None or parsed.namespace != SYS:
        return None
    found = classify_enos_uplink(parsed.rest)  # Alink's event topics have the same shape
    if found is None or found[0] is not Uplink.EVENT_POST or found[1] == "property":
        return None
    try:
        request = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    params = request.get("params") if isinstance(request, dict) else None
    return _message(lookup, pk, dk, "events", ts, {"eventId": found[1], "value": params})
