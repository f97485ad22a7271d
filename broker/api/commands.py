"""`/commands` actions (docs/protocol.md, section 10): invoke a service, set measurepoints or
send raw bytes to a device, and follow, list or cancel what was sent.

With `pendingTtl` 0 (the default) the call waits for the device's reply (up to
`timeout` seconds) and answers the ended command; above 0 it answers at once with the
command, which waits up to `pendingTtl` seconds for a device that is not reachable.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from starlette.responses import Response

from broker.api.calls import Call, Handler
from broker.api.envelope import ok
from broker.gate.commands import CommandService
from broker.gate.credentials import DeviceId
from registry import InvalidArgument

MAX_LIST = 100


def _number(call: Call, name: str) -> float | None:
    raw = call.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        seconds = float(raw)
    except ValueError:
        raise InvalidArgument(f"{name} must be a number of seconds") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidArgument(f"{name} must be a number of seconds, not {raw!r:.40}")
    return seconds


def command_actions(commands: CommandService) -> dict[str, Handler]:
    async def target(call: Call) -> tuple[str, DeviceId]:
        """The device the call names, from memory when by productKey and deviceKey."""
        org_id, query = call.org.orgId, call.query
        product_key, device_key = query.get("productKey"), query.get("deviceKey")
        if product_key and device_key and not query.get("assetId"):
            return org_id, commands.device_of(org_id, product_key, device_key)
        device = await call.device()  # by assetId, or the registry's refusal
        return org_id, (device.productKey, device.deviceKey)

    async def submit(call: Call, kind: str, data: object, service_id: str = "") -> Response:
        command = await commands.submit(
            *await target(call),
            kind,
            data,
            service_id=service_id,
            reply_timeout=_number(call, "timeout"),
            pending_ttl=_number(call, "pendingTtl") or 0,
        )
        return ok(command.view())

    def field(call: Call, name: str) -> object:
        body = call.body if isinstance(call.body, Mapping) else {}
        if name not in body:
            raise InvalidArgument(f"body field {name} is required")
        return body[name]

    async def invoke_service(call: Call) -> Response:
        service_id = call.param("serviceId")
        return await submit(call, "service", field(call, "inputData"), service_id)

    async def set_measurepoint(call: Call) -> Response:
        return await submit(call, "setMeasurepoint", field(call, "measurepoints"))

    async def send_raw(call: Call) -> Response:
        return await submit(call, "raw", call.base64_field("payloadBase64"))

    async def get(call: Call) -> Response:
        return ok((await commands.get(call.org.orgId, call.param("commandId"))).view())

    async def cancel(call: Call) -> Response:
        return ok((await commands.cancel(call.org.orgId, call.param("commandId"))).view())

    async def list_(call: Call) -> Response:
        device = await call.device()
        found = await call.registry.command_log.list_commands(
            device.productKey, device.deviceKey, MAX_LIST
        )
        return ok([command.view() for command in found])

    return {
        "invokeService": invoke_service,
        "setMeasurepoint": set_measurepoint,
        "sendRaw": send_raw,
        "get": get,
        "list": list_,
        "cancel": cancel,
    }
