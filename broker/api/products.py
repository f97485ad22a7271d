"""`/products` and `/statistics` actions, and the product's image (`product-images`)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping

from starlette.responses import Response

from broker.api.calls import Call, Handler, pagination
from broker.api.envelope import ok
from registry import InvalidArgument
from registry.catalogue import BY_ID

# What EnOS's Create Product marks Mandatory in the body (orgId, in the query, too).
MANDATORY = ("productName", "productType", "dataFormat", "biDirectionalAuth", "modelId")


async def create(call: Call) -> Response:
    missing = missing_mandatory(call)
    if missing:
        raise InvalidArgument(
            f"missing mandatory parameters: {', '.join(missing)} (EnOS's Create Product"
            " requires orgId in the query and productName, productType, dataFormat,"
            " biDirectionalAuth and modelId in the body)"
        )
    product = await call.registry.create_product(call.org.orgId, call.body)
    return ok(product.productKey)


def missing_mandatory(call: Call) -> list[str]:
    """The mandatory parameters the call leaves out (absent or null). A standard-TSL
    category carries its thing model, so it stands in for modelId, as on the Developer
    Center; a body that is no object is left to the registry's own refusal."""
    missing = [] if call.query.get("orgId") else ["orgId (query)"]
    body = call.body
    if not isinstance(body, Mapping):
        return missing
    named = body.get("category")
    chosen = BY_ID.get(named) if isinstance(named, str) else None
    for name in MANDATORY:
        if name == "modelId" and chosen is not None and chosen.modelId is not None:
            continue
        if body.get(name) is None:
            missing.append(name)
    return missing


async def get(call: Call) -> Response:
    product = await call.registry.get_product(call.org.orgId, call.param("productKey"))
    return ok(product.view())


async def list_(call: Call) -> Response:
    """Newest first, as the Developer Center lists them; `projectId` narrows to a project."""
    page = call.page()
    products, total = await call.registry.list_products(
        call.org.orgId, page, call.query.get("projectId") or None
    )
    return ok([p.view() for p in products], pagination=pagination(page, total))


async def search(call: Call) -> Response:
    """EnOS's Search Product: `{"expression": ..., "pagination": {...}}`, newest first
    (registry/product_search.py has the grammar)."""
    body = call.body if isinstance(call.body, Mapping) else {}
    expression = body.get("expression", "")
    if not isinstance(expression, str):
        raise InvalidArgument("body field expression must be a string")
    page = call.page()
    products, total = await call.registry.search_products(call.org.orgId, expression, page)
    return ok([p.view() for p in products], pagination=pagination(page, total))


async def release(call: Call) -> Response:
    product = await call.registry.release_product(call.org.orgId, call.param("productKey"))
    return ok(product.view())


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


async def put_image(call: Call) -> Response:
    """`{"imageBase64": ...}`: a PNG or JPEG, stored (replacing one there)."""
    encoded = call.field("imageBase64")
    try:
        content = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgument("body field imageBase64 is not valid base64") from None
    product = await call.registry.put_product_image(
        call.org.orgId, call.param("productKey"), content
    )
    return ok(product.view())


async def get_image(call: Call) -> Response:
    image = await call.registry.get_product_image(call.org.orgId, call.param("productKey"))
    return ok(
        {
            "productKey": image.productKey,
            "contentType": image.contentType,
            "size": len(image.content),
            "updatedAt": image.updatedAt,
            "imageBase64": base64.b64encode(image.content).decode(),
        }
    )


async def delete_image(call: Call) -> Response:
    await call.registry.delete_product_image(call.org.orgId, call.param("productKey"))
    return ok()


PRODUCT_ACTIONS: dict[str, Handler] = {
    "create": create,
    "get": get,
    "list": list_,
    "update": update,
    "delete": delete,
    "release": release,
    "search": search,
}
IMAGE_ACTIONS: dict[str, Handler] = {"put": put_image, "get": get_image, "delete": delete_image}
STATISTICS_ACTIONS: dict[str, Handler] = {"get": statistics, "list": statistics_list}
