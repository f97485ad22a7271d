"""`/broker` actions: what the running broker has counted (admin organisation only,
since the figures span every organisation)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.responses import Response

from broker.api.calls import Call, Handler
from broker.api.envelope import ok
from registry import Forbidden

StatsSource = Callable[[], dict[str, Any]]
Sync = Callable[[], Awaitable[None]]


def broker_actions(source: StatsSource, sync: Sync | None = None) -> dict[str, Handler]:
    async def stats(call: Call) -> Response:
        if not call.org.admin:
            raise Forbidden("only the admin organisation reads the broker's statistics")
        return ok(source())

    async def sync_(call: Call) -> Response:
        """A barrier: answers once what devices sent before the call is stored."""
        if sync is not None:
            await sync()
        return ok(None)

    return {"stats": stats, "sync": sync_}
