"""`GET /connect-service/v2.1/stream`: the organisation's messages as Server-Sent Events,
for the console and for `curl -N`.

Query: `productKey` (comma-separated; none: every product) and `kinds` (comma-separated,
of registry.streams.KINDS; none: all of them; `refused`, refused CONNECTs and uplinks
answered with an error, only when named). Each event is `id: {boot}-{seq}`, `event:
{kind}`, `data: {json}`; a client that reconnects with `Last-Event-ID` gets what it
missed while the feed still holds it (broker/streams/live.py). A comment line every
`HEARTBEAT` seconds keeps proxies from closing a quiet stream.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from broker.api.envelope import error
from broker.streams.hub import StreamHub
from broker.streams.live import Listener
from broker.streams.messages import LIVE_ONLY_KINDS, AppMessage
from registry import InvalidArgument, Organization, RegistryError
from registry.streams import KINDS

HEARTBEAT = 15.0  # seconds
LIVE_KINDS = (*KINDS, *LIVE_ONLY_KINDS)

Authenticate = Callable[[Request], Awaitable[Organization]]


def _list(request: Request, name: str) -> list[str]:
    return [v for raw in request.query_params.getlist(name) for v in raw.split(",") if v]


def stream_endpoint(
    hub: StreamHub, authenticate: Authenticate
) -> Callable[..., Awaitable[Response]]:
    live = hub.live

    async def stream(request: Request) -> Response:
        try:
            return await _open(request)
        except RegistryError as exc:
            headers = {"WWW-Authenticate": 'Basic realm="gatehouse"'} if exc.status == 401 else None
            return error(exc.status, exc.code, exc.msg, headers)

    async def _open(request: Request) -> Response:
        org = await authenticate(request)
        products = set(_list(request, "productKey"))
        kinds = set(_list(request, "kinds")) or set(KINDS)  # `refused` only when named
        unknown = sorted(kinds - set(LIVE_KINDS))
        if unknown:
            raise InvalidArgument(f"unknown kind {unknown[0]!r:.40}; use: {', '.join(LIVE_KINDS)}")
        for product_key in products:
            await request.app.state.registry.get_product(org.orgId, product_key)

        def wants(message: AppMessage) -> bool:
            return message.kind in kinds and (not products or message.product_key in products)

        listener = live.open(org.orgId, wants, request.headers.get("last-event-id"))
        if listener is None:
            raise StreamsBusy(f"at most {live.config.max_streams} live streams are open")
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(
            _events(hub, listener), media_type="text/event-stream", headers=headers
        )

    return stream


class StreamsBusy(RegistryError):
    code = 99503
    status = 503


async def _events(hub: StreamHub, listener: Listener) -> AsyncIterator[bytes]:
    live = hub.live
    try:
        yield b"retry: 2000\n\n"
        while True:
            if not listener.queue:
                listener.ready.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(listener.ready.wait(), HEARTBEAT)
                if not listener.queue:
                    yield b": keepalive\n\n"
                    continue
            chunk: list[str] = []
            while listener.queue and len(chunk) < 100:
                seq, message = listener.queue.popleft()
                chunk.append(
                    f"id: {live.event_id(seq)}\nevent: {message.kind}\ndata: {message.json()}\n\n"
                )
            listener.sent += len(chunk)
            yield "".join(chunk).encode()
    finally:
        live.close(listener)
