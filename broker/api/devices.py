"""`/devices` actions."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from starlette.responses import Response

from broker.api.calls import Call, Handler, pagination
from broker.api.envelope import ok
from broker.api.messages import log_page
from broker.gate.admission import iso_time
from broker.gate.connect_guard import ConnectGuard
from broker.gate.custom_downlink import CustomDownlink
from registry import Device, InvalidArgument

log = logging.getLogger("gatehouse.api")


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


async def get_latest(call: Call) -> Response:
    """The newest value of each measurepoint, as the device last posted it."""
    return ok(await call.registry.latest_values(await call.device()))


async def list_messages(call: Call) -> Response:
    """The device's uplinks and connection events (`kind`/`kinds`: up, online, offline,
    refused, comma-separated; `limit` up to 1000): newest first, or with `since` (a
    `nextCursor` of before) the ones after it, oldest first (broker/api/messages.py)."""
    device = await call.device()
    return await log_page(call, device.productKey, device.deviceKey)


DEVICE_ACTIONS: dict[str, Handler] = {
    "getLatest": get_latest,
    "listMessages": list_messages,
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


def connect_block_actions(guard: ConnectGuard) -> dict[str, Handler]:
    """`getConnectBlock` and `clearConnectBlock`: what keeps a device from connecting
    (its connect limit, wrong signs from an address), and lifting it."""

    def view(device: Device) -> dict[str, Any]:
        now, wall_ms = guard.clock.monotonic(), guard.clock.wall_ms()
        key = (device.productKey, device.deviceKey)
        blocks = [
            {
                "reason": block.reason,
                "address": block.address,
                "blockedUntil": iso_time(wall_ms + block.seconds_left * 1000),
                "secondsLeft": round(block.seconds_left, 1),
            }
            for block in guard.blocks(key, now)
        ]
        return {
            "productKey": device.productKey,
            "deviceKey": device.deviceKey,
            "blocked": bool(blocks),
            "blocks": blocks,
            "failedSigns": guard.failures_of(key, now),
        }

    async def get_block(call: Call) -> Response:
        return ok(view(await call.device()))

    async def clear_block(call: Call) -> Response:
        device = await call.device()
        lifted = guard.clear((device.productKey, device.deviceKey))
        log.info(
            "%s/%s: %d connect block(s) lifted through the API",
            device.productKey,
            device.deviceKey,
            lifted,
        )
        return ok({**view(device), "cleared": lifted})

    return {"getConnectBlock": get_block, "clearConnectBlock": clear_block}


def publish_actions(downlink: CustomDownlink) -> dict[str, Handler]:
    """`publish`: an application's message to one of the device's custom topics
    (Alibaba's Pub): body `topic` (`/{pk}/{dk}/user/...`, or what follows `/{pk}/{dk}/`),
    `payloadBase64`, and `qos` 0 (the default) or 1."""

    async def publish(call: Call) -> Response:
        device = await call.device()
        body = call.body if isinstance(call.body, Mapping) else {}
        qos = body.get("qos", 0)
        if isinstance(qos, bool) or not isinstance(qos, int):
            raise InvalidArgument(f"qos must be 0 or 1, not {qos!r:.20}")
        done = await downlink.publish(
            call.org.orgId,
            device.productKey,
            device.deviceKey,
            call.field("topic"),
            call.base64_field("payloadBase64"),
            qos,
        )
        return ok({"topic": done.topic, "subscribers": done.subscribers, "online": done.online})

    return {"publish": publish}
