"""`/thing-models` actions."""

from __future__ import annotations

from starlette.responses import Response

from broker.api.calls import Call, Handler
from broker.api.envelope import ok


async def create(call: Call) -> Response:
    model = await call.registry.create_model(call.org.orgId, call.body)
    return ok(model.modelId)


async def update(call: Call) -> Response:
    return ok((await call.registry.update_model(call.org.orgId, call.body)).view())


async def get(call: Call) -> Response:
    return ok((await call.registry.get_model(call.org.orgId, call.param("modelId"))).view())


async def list_(call: Call) -> Response:
    models = await call.registry.list_models(call.org.orgId, call.page())
    return ok([m.view() for m in models])


async def delete(call: Call) -> Response:
    await call.registry.delete_model(call.org.orgId, call.param("modelId"))
    return ok()


MODEL_ACTIONS: dict[str, Handler] = {
    "create": create,
    "update": update,
    "get": get,
    "list": list_,
    "delete": delete,
}
