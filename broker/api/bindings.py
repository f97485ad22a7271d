"""`/bindings` actions: end-user accounts bound to devices."""

from __future__ import annotations

from starlette.responses import Response

from broker.api.calls import Call, Handler
from broker.api.envelope import ok


async def bind(call: Call) -> Response:
    binding = await call.registry.bind(await call.device(), call.field("userId"))
    return ok(binding.model_dump())


async def share(call: Call) -> Response:
    device = await call.device()
    binding = await call.registry.share(device, call.field("ownerId"), call.field("userId"))
    return ok(binding.model_dump())


async def unbind(call: Call) -> Response:
    await call.registry.unbind(await call.device(), call.field("userId"))
    return ok()


async def list_(call: Call) -> Response:
    bindings = await call.registry.list_bindings(await call.device())
    return ok([b.model_dump() for b in bindings])


BINDING_ACTIONS: dict[str, Handler] = {
    "bind": bind,
    "share": share,
    "unbind": unbind,
    "list": list_,
}
