"""The EnOS response envelope: `{"code": 0, "msg": "OK", "requestId": ..., "data": ...}`."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from starlette.responses import Response


class EnvelopeResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def request_id() -> str:
    return str(uuid.uuid4())  # the form of EnOS's samples


def ok(data: Any = None, **extra: Any) -> EnvelopeResponse:
    body = {"code": 0, "msg": "OK", "requestId": request_id(), "data": data, **extra}
    return EnvelopeResponse(body)


def error(status: int, code: int, msg: str, headers: dict[str, str] | None = None) -> Response:
    body = {"code": code, "msg": msg, "requestId": request_id(), "data": None}
    return EnvelopeResponse(body, status_code=status, headers=headers)
