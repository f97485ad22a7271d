"""`/device-topos` actions: a gateway's sub-devices, managed over the API with the same
rules as `thing/topo/add` and `thing/topo/delete` over MQTT (without the signs: the
caller is the organisation)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.responses import Response

from broker.api.calls import Call, Handler
from broker.api.envelope import ok
from broker.gate.gateways import GatewayService
from broker.protocol import codes
from registry import Conflict, Device, InvalidArgument, NotFound

MAX_SUB_DEVICES = 1000


async def _sub_devices(call: Call) -> list[Device]:
    entries = call.body.get("subDevices") if isinstance(call.body, Mapping) else None
    if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_SUB_DEVICES:
        raise InvalidArgument(
            f"body field subDevices is required: 1 to {MAX_SUB_DEVICES} objects with"
            " productKey and deviceKey, or assetId"
        )
    found = []
    for entry in entries:
        if not isinstance(entry, Mapping):
            raise InvalidArgument("each of subDevices must be an object")
        for name in ("productKey", "deviceKey", "assetId"):
            if not isinstance(entry.get(name, ""), str):
                raise InvalidArgument(f"subDevices: {name} must be a string")
        found.append(
            await call.registry.get_device(
                call.org.orgId,
                product_key=entry.get("productKey"),
                device_key=entry.get("deviceKey"),
                asset_id=entry.get("assetId"),
            )
        )
    return found


def _view(device: Device) -> dict[str, Any]:
    return {
        "productKey": device.productKey,
        "deviceKey": device.deviceKey,
        "assetId": device.assetId,
        "deviceName": device.model_dump(mode="json", include={"deviceName"})["deviceName"],
        "state": device.state,
    }


def topo_actions(gateways: GatewayService) -> dict[str, Handler]:
    async def add(call: Call) -> Response:
        gateway = await call.device()
        subs = await _sub_devices(call)
        for sub in subs:
            refused = await gateways.add(gateway, sub)
            if refused is not None:
                raise refused
        return ok([_view(sub) for sub in subs])

    async def delete(call: Call) -> Response:
        gateway = await call.device()
        for sub in await _sub_devices(call):
            problem = await gateways.delete(
                (gateway.productKey, gateway.deviceKey),
                (sub.productKey, sub.deviceKey),
                org_id=call.org.orgId,
            )
            if problem is not None:
                if problem.code == codes.NOT_GATEWAYS_SUB_DEVICE:
                    raise NotFound(problem.message)
                raise Conflict(problem.message)
        return ok()

    async def list_(call: Call) -> Response:
        gateway = await call.device()
        subs = await call.registry.sub_device_records(gateway.productKey, gateway.deviceKey)
        return ok([_view(sub) for sub in subs])

    async def get_gateway(call: Call) -> Response:
        """The sub-device's gateway (null when it is in no gateway's topology)."""
        topology = await call.registry.gateway_of(await call.device())
        if topology is None:
            return ok(None)
        gateway = await call.registry.get_device(
            call.org.orgId,
            product_key=topology.gatewayProductKey,
            device_key=topology.gatewayDeviceKey,
        )
        return ok(_view(gateway))

    return {
        "addSubDevice": add,
        "deleteSubDevice": delete,
        "list": list_,
        "getGateway": get_gateway,
    }
