"""The hub: told of each batch the write-behind committed, it hands the batch's messages
to the subscriptions (retained before the devices are answered), the live streams and
the webhooks (both in memory, bounded)."""

from __future__ import annotations

import collections
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from broker.gate.credentials import CredentialCache
from broker.gate.writer import CommittedBatch, WriteBehind
from broker.streams.live import LiveConfig, LiveFeed
from broker.streams.messages import AppMessage, from_batch
from broker.streams.subscriptions import RetentionConfig, Subscriptions
from broker.streams.webhooks import WebhookConfig, Webhooks
from registry.streams import StreamStore


@dataclass(frozen=True, slots=True)
class StreamsConfig:
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    live: LiveConfig = field(default_factory=LiveConfig)
    webhooks: WebhookConfig = field(default_factory=WebhookConfig)


class StreamHub:
    def __init__(
        self, store: StreamStore, cache: CredentialCache, config: StreamsConfig | None = None
    ) -> None:
        self.config = config or StreamsConfig()
        self.store = store
        self.cache = cache
        self.subscriptions = Subscriptions(store, self.config.retention)
        self.live = LiveFeed(self.config.live)
        self.webhooks = Webhooks(self.config.webhooks)
        self.by_kind: collections.Counter[str] = collections.Counter()
        # Told of each batch's messages after the rest (the MQTT lifecycle topics);
        # each must return at once.
        self.taps: list[Callable[[Sequence[AppMessage]], None]] = []

    async def start(self, writer: WriteBehind) -> None:
        await self.subscriptions.start()
        self.webhooks.start(await self.store.all_webhooks())
        writer.observers.append(self.committed)

    async def stop(self, writer: WriteBehind) -> None:
        """After the writer's last batch: what it committed has been retained."""
        if self.committed in writer.observers:
            writer.observers.remove(self.committed)
        await self.webhooks.stop()
        await self.subscriptions.stop()

    def _lookup(self, product_key: str, device_key: str) -> tuple[str, str] | None:
        product = self.cache.products.get(product_key)
        device = self.cache.devices.get((product_key, device_key))
        if product is None:
            return None
        return product.product.orgId, device.asset_id if device is not None else ""

    async def committed(self, batch: CommittedBatch) -> None:
        messages = list(from_batch(batch, self._lookup))
        if not messages:
            return
        for message in messages:
            self.by_kind[message.kind] += 1
        await self.subscriptions.append(messages)
        self.live.publish(messages)
        self.webhooks.publish(messages)
        for tap in self.taps:
            tap(messages)
