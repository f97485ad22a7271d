"""`/activation-codes` actions: Quectel's "Purchase Activation Code", and each product's
totals (README, "Activation codes")."""

from __future__ import annotations

from starlette.responses import Response

from broker.api.calls import Call, Handler, pagination
from broker.api.envelope import ok
from registry import ids


async def purchase(call: Call) -> Response:
    """`{"count": N, "validDays": D}` (or `validSeconds`): a batch of codes."""
    codes = await call.registry.purchase_codes(call.org.orgId, call.param("productKey"), call.body)
    first = codes[0]
    return ok(
        {
            "productKey": first.productKey,
            "batchId": first.batchId,
            "count": len(codes),
            "validSeconds": first.validSeconds,
            "codes": [c.code for c in codes],
        }
    )


async def get(call: Call) -> Response:
    """The product's totals: total, available, consumed (and inUse of the consumed)."""
    totals = await call.registry.code_totals(call.org.orgId, call.param("productKey"))
    return ok(totals.model_dump())


async def list_(call: Call) -> Response:
    """The codes in the order devices take them, each with its device and status."""
    page = call.page()
    codes, total = await call.registry.list_codes(call.org.orgId, call.param("productKey"), page)
    now = ids.now_ms()
    return ok([c.view(now) for c in codes], pagination=pagination(page, total))


CODE_ACTIONS: dict[str, Handler] = {"purchase": purchase, "get": get, "list": list_}
