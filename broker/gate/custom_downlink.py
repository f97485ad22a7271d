"""The platform's messages to a device's custom topics (Alibaba's Pub API): an application
sends bytes to `/{pk}/{dk}/user/...`, and the device (or anyone allowed to read there)
gets them as they are. Nothing parses them: Alibaba's scripts parse only what devices
send (docs/protocol.md, section 12).

Delivered at once to the subscribers connected now (queued for those whose in-flight
window is full, and for a persistent session's QoS 1 subscriptions while it is away);
nothing is kept for a device that has not subscribed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from broker.gate.credentials import CredentialCache, DeviceId
from broker.gate.links import Links
from broker.protocol.topics import PARSE_TAG, custom_key
from registry import InvalidArgument, NotFound

MAX_TOPIC = 1024  # characters of a custom topic (Alibaba: 64 for the name below `user/`)


@dataclass(frozen=True, slots=True)
class Published:
    topic: str
    subscribers: int  # how many subscriptions it went to now
    online: bool  # whether the device itself is connected


class CustomDownlink:
    def __init__(
        self,
        cache: CredentialCache,
        links: Links,
        is_online: Callable[[DeviceId], bool],
        *,
        max_payload: int,
    ) -> None:
        self.cache = cache
        self.links = links
        self.is_online = is_online
        self.max_payload = max_payload

    async def publish(
        self, org_id: str, product_key: str, device_key: str, topic: str, payload: bytes, qos: int
    ) -> Published:
        """Send `payload` on the organisation's device's custom topic `topic` (the whole
        topic, or what follows `/{pk}/{dk}/`); NotFound for a device it does not have,
        InvalidArgument for a topic, payload or QoS it may not send."""
        product = self.cache.products.get(product_key)
        device = self.cache.devices.get((product_key, device_key))
        if product is None or product.product.orgId != org_id or device is None:
            raise NotFound(f"device {product_key}/{device_key} does not exist")
        full = topic if topic.startswith("/") else f"/{product_key}/{device_key}/{topic}"
        if len(full) > MAX_TOPIC:
            raise InvalidArgument(f"topic is {len(full)} characters; the limit is {MAX_TOPIC}")
        levels = full.split("/")
        if custom_key(levels) != (product_key, device_key) or len(levels) < 5:
            raise InvalidArgument(
                f"topic must be under /{product_key}/{device_key}/user/, not {full!r:.80}"
            )
        if any(level in ("+", "#") or not level for level in levels[1:]) or "\0" in full:
            raise InvalidArgument("topic must be a topic name: no wildcards, no empty levels")
        if full.endswith(PARSE_TAG):
            raise InvalidArgument(f"{PARSE_TAG} is for what devices send, not for downlinks")
        if qos not in (0, 1):
            raise InvalidArgument(f"qos must be 0 or 1, not {qos}")
        if len(payload) > self.max_payload:
            raise InvalidArgument(
                f"the message is {len(payload)} bytes; the limit is {self.max_payload}"
            )
        subscribers = await self.links.route(full, payload, qos)
        return Published(full, subscribers, self.is_online((product_key, device_key)))
