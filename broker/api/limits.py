"""Limits on what an API request may send: the body's size, enforced before the body is
read (an ASGI middleware), and how deep its JSON may nest.

A declared Content-Length over the limit is refused at once, unread; a chunked body is
counted as it streams and refused as soon as it passes the limit. A body within the
limit is read here (it would be read whole anyway) and handed on to the app, so that
no request holds more than the limit in memory before it is authenticated.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from broker.api.envelope import error

# Generous for the largest batch the API takes: a 10,000-device batchCreate with keys,
# secrets, names in two languages, attributes and tags is about 2.6 MB.
DEFAULT_MAX_BODY = 8 * 1024 * 1024
TOO_LARGE_CODE = 99413


class BodyLimit:
    def __init__(self, app: ASGIApp, max_body: int = DEFAULT_MAX_BODY) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body:
            await self._refuse(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client went away: let the app see it
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                await self._refuse(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        del chunks
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # after the body: a disconnect, when it comes
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error(
            413,
            TOO_LARGE_CODE,
            f"the request body is larger than the limit of {self.max_body} bytes"
            " (gatehouse serve --max-api-body)",
            # The rest of the body is never read: end the connection after the answer.
            {"Connection": "close"},
        )
        await response(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses a malformed length itself
    return None


# JSON nested deeper than this is refused: orjson cannot write back more than 254 levels,
# and no API body needs more than a few (a thing model's structs, a device's attributes).
MAX_JSON_DEPTH = 64
_NAMED_LEVELS = 3  # how much of the path to the offending value an error names


def too_deep(value: Any, limit: int = MAX_JSON_DEPTH) -> str | None:
    """Where `value` nests deeper than `limit` levels (e.g. `deviceList[3].deviceAttributes`),
    or None. Iterative, so that no nesting can exhaust the stack."""
    stack: list[tuple[Any, int, str]] = [(value, 1, "")]
    while stack:
        node, depth, where = stack.pop()
        if isinstance(node, dict):
            children: Iterable[tuple[str, Any]] = (
                (f"{where}.{key}" if where else str(key), child) for key, child in node.items()
            )
        elif isinstance(node, list):
            children = ((f"{where}[{index}]", child) for index, child in enumerate(node))
        else:
            continue
        if depth > limit:
            return where or "the body"
        for path, child in children:
            stack.append((child, depth + 1, path if depth <= _NAMED_LEVELS else where))
    return None
