"""`/messages` actions: a product's uplinks and connection events, and the cursor a
poller follows (`devices?action=listMessages` pages one device's the same way).

Without `since` the newest come first; with `since` (the `nextCursor` of the answer
before) the ones after it, oldest first, so polling with each answer's `nextCursor`
misses and repeats nothing while the bounded device log (`--message-log-size`) still
holds them. Each entry has its own `cursor`.
"""

from __future__ import annotations

from starlette.responses import Response

from broker.api.calls import Call, Handler
from broker.api.envelope import ok
from registry import InvalidArgument

MAX_LIMIT = 1000


def _whole(call: Call, name: str) -> int | None:
    text = call.query.get(name)
    if text is None or text == "":
        return None
    if not (text.isascii() and text.isdigit()) or len(text) > 19:
        raise InvalidArgument(f"{name} must be a whole number, not {text!r:.40}")
    return int(text)


async def log_page(call: Call, product_key: str, device_key: str | None) -> Response:
    raw = ",".join(filter(None, (call.query.get("kinds"), call.query.get("kind"))))
    kinds = [k for k in raw.split(",") if k]
    limit = _whole(call, "limit")
    entries, cursor = await call.registry.log_page(
        product_key,
        device_key,
        kinds,
        since=_whole(call, "since"),
        limit=100 if limit is None else limit,
    )
    return ok(entries, nextCursor=cursor)


async def list_(call: Call) -> Response:
    """`productKey` (required), optional `deviceKey`, `kinds`, `since`, `limit`."""
    product = await call.registry.get_product(call.org.orgId, call.param("productKey"))
    return await log_page(call, product.productKey, call.query.get("deviceKey") or None)


MESSAGE_ACTIONS: dict[str, Handler] = {"list": list_}
