"""`/devices` actions."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import Response

from broker.api.calls import Call, Handler, pagination
from broker.api.envelope import ok
from registry import InvalidArgument


async def create(call: Call) -> Response:
    (device,) = await call.registry.create_devices(call.org.orgId, [call.body])
    return ok(device.credentials())


async def batch_create(call: Call) -> Response:
    devices = call.body.get("deviceList") if isinstance(call.body, Mapping) else None
    if not isinstance(devices, list):
        raise InvalidArgument("body field deviceList is required (a list of device bodies)")
    created = await call.registry.create_devices(call.org.orgId, devices)
    return ok([d.credentials() for d in created])


async def get(call: Call) -> Response:
    return ok((await call.device()).view())


async def list_(call: Call) -> Response:
    page = call.page()
    devices, total = await call.registry.list_devices(
        call.org.orgId, call.param("productKey"), page
    )
    return ok([d.view() for d in devices], pagination=pagination(page, total))


async def export_credentials(call: Call) -> Response:
    """Every device's credentials for a product, for simulators and load runs."""
    product_key = call.param("productKey")
    page = call.page()
    devices, total = await call.registry.list_devices(call.org.orgId, product_key, page)
    return ok([d.credentials() for d in devices], pagination=pagination(page, total))


async def update(call: Call) -> Response:
    device = await call.registry.update_device(await call.device(), call.body)
    return ok(device.view())


async def enable(call: Call) -> Response:
    return ok((await call.registry.set_enabled(await call.device(), True)).view())


async def disable(call: Call) -> Response:
    return ok((await call.registry.set_enabled(await call.device(), False)).view())


async def delete(call: Call) -> Response:
    await call.registry.delete_device(await call.device())
    return ok()


DEVICE_ACTIONS: dict[str, Handler] = {
    "create": create,
    "batchCreate": batch_create,
    "get": get,
    "list": list_,
    "exportCredentials": export_credentials,
    "update": update,
    "enable": enable,
    "disable": disable,
    "delete": delete,
}
