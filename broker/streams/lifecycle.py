"""Lifecycle topics for MQTT applications: each online and offline of a device, once
committed, published on `/as/mqtt/status/{productKey}/{deviceKey}` in the shape of
Alibaba's server-side device status message (`status`, `iotId`, `productKey`,
`deviceName`, `time`, `utcTime`), with gatehouse's `reason` beside it.

Only an application of the device's organisation receives it: the ACL keeps the
`/as/` namespace to applications, filtered by the ProductKey's owner on each delivery
(broker/gate/access.py), like their devices' own topics.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import orjson

from broker.gate.links import Links
from broker.streams.messages import AppMessage

STATUS_PREFIX = "/as/mqtt/status/"
LIFECYCLE_KINDS = ("online", "offline")


def status_topic(product_key: str, device_key: str) -> str:
    return f"{STATUS_PREFIX}{product_key}/{device_key}"


def _times(wall_ms: int) -> tuple[str, str]:
    """Alibaba's two forms: `2018-08-31 07:32:28.205` and `2018-08-31T07:32:28.205Z`
    (both UTC here: gatehouse has no region's local time)."""
    moment = datetime.fromtimestamp(wall_ms / 1000, UTC)
    text = moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{wall_ms % 1000:03d}"
    return text, text.replace(" ", "T") + "Z"


def _reason(message: AppMessage) -> str:
    """Why, as the presence said it; a plain connect or disconnect says nothing."""
    detail = message.body.get("reason")
    if isinstance(detail, str) and detail:
        return detail
    return "connected" if message.kind == "online" else "disconnected"


def status_payload(message: AppMessage) -> bytes:
    time_text, utc_text = _times(message.ts)
    return orjson.dumps(
        {
            "status": message.kind,
            "iotId": message.body.get("assetId", ""),
            "productKey": message.product_key,
            "deviceName": message.device_key,
            "deviceKey": message.device_key,  # EnOS's name for it
            "time": time_text,
            "utcTime": utc_text,
            "timestamp": message.ts,
            "reason": _reason(message),
        }
    )


class LifecycleTopics:
    """Told of each committed batch's messages (after the data subscriptions have
    retained them), it sends the lifecycle ones to the broker. `links` is asked at each
    send: the running broker's links are bound after the streams start."""

    def __init__(self, links: Callable[[], Links]) -> None:
        self._links = links
        self.published = 0

    def __call__(self, messages: Sequence[AppMessage]) -> None:
        links: Links | None = None
        for message in messages:
            if message.kind not in LIFECYCLE_KINDS:
                continue
            links = links or self._links()
            links.publish(
                status_topic(message.product_key, message.device_key), status_payload(message)
            )
            self.published += 1
