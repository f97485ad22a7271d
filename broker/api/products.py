"""`/products` and `/statistics` actions."""

from __future__ import annotations

from starlette.responses import Response

from broker.api.calls import Call, Handler, pagination
from broker.api.envelope import ok


async def create(call: Call) -> Response:
    product = await call.registry.create_product(call.org.orgId, call.body)
    return ok(product.productKey)


async def get(call: Call) -> Response:
    product = await call.registry.get_product(call.org.orgId, call.param("productKey"))
    return ok(product.view())


async def list_(call: Call) -> Response:
    page = call.page()
    products, total = await call.registry.list_products(call.org.orgId, page)
    return ok([p.view() for p in products], pagination=pagination(page, total))


async def update(call: Call) -> Response:
    product = await call.registry.update_product(
        call.org.orgId, call.param("productKey"), call.body
    )
    return ok(product.view())


async def delete(call: Call) -> Response:
    await call.registry.delete_product(call.org.orgId, call.param("productKey"))
    return ok()


async def statistics(call: Call) -> Response:
    stats = await call.registry.product_stats(call.org.orgId, call.param("productKey"))
    return ok(stats.model_dump())


async def statistics_list(call: Call) -> Response:
    page = call.page()
    products, total = await call.registry.list_products(call.org.orgId, page)
    stats = await call.registry.stats_of(products)
    return ok([s.model_dump() for s in stats], pagination=pagination(page, total))


PRODUCT_ACTIONS: dict[str, Handler] = {
    "create": create,
    "get": get,
    "list": list_,
    "update": update,
    "delete": delete,
}
STATISTICS_ACTIONS: dict[str, Handler] = {"get": statistics, "list": statistics_list}
