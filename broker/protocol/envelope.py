"""The JSON request and reply envelopes (docs/protocol.md, section 2), parsed with orjson."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson


class EnvelopeError(ValueError):
    """The payload is not a request envelope; the message says what is wrong."""


class PayloadNotJson(EnvelopeError):
    """The payload does not parse as JSON at all (the SDKs have a code of their own)."""


@dataclass(frozen=True, slots=True)
class Request:
    id: str
    method: str
    params: Any
    version: str
    body: dict[str, Any]  # the whole parsed object, for fields outside the envelope


def parse_request(payload: bytes) -> Request:
    """Parse a request. The id is kept as a string: the EnOS SDK matches replies by it."""
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise PayloadNotJson(f"payload is not JSON: {exc.msg} at byte {exc.pos}") from None
    if not isinstance(body, dict):
        raise EnvelopeError("payload must be a JSON object with id, version, method and params")
    raw_id = body.get("id")
    if isinstance(raw_id, bool) or not isinstance(raw_id, str | int):
        raise EnvelopeError("id must be a string")
    method = body.get("method", "")
    if not isinstance(method, str):
        raise EnvelopeError("method must be a string")
    version = body.get("version", "1.0")
    return Request(
        id=str(raw_id),
        method=method,
        params=body.get("params"),
        version=version if isinstance(version, str) else str(version),
        body=body,
    )


def request_id_of(payload: bytes) -> str:
    """The id of a payload that failed to parse as a request, if one can be found."""
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return ""
    if isinstance(body, dict):
        raw_id = body.get("id")
        if isinstance(raw_id, str | int) and not isinstance(raw_id, bool):
            return str(raw_id)
    return ""


def encode_reply(request_id: str, code: int, data: Any = "", message: str = "") -> bytes:
    return orjson.dumps({"id": request_id, "code": code, "data": data, "message": message})


def encode_request(request_id: str, method: str, params: Any, version: str = "1.0") -> bytes:
    return orjson.dumps({"id": request_id, "version": version, "method": method, "params": params})


def encode_alink_reply(
    request_id: str, code: int, data: Any = None, message: str = "", method: str = ""
) -> bytes:
    """Alink's reply: the request's method and version ride along."""
    body: dict[str, Any] = {
        "id": request_id,
        "code": code,
        "data": {} if data in (None, "") else data,
        "message": message or ("success" if code == 200 else ""),
        "version": "1.0",
    }
    if method:
        body["method"] = method
    return orjson.dumps(body)
