"""Data subscriptions at run time: each one's retained log, its consumer groups, and who
in a group owns which partition.

Delivery is at least once. A message is retained (in the store, per subscription and
partition) before the device that sent it is answered. A group's cursor is where its
consumers have been given messages up to; its committed offset is what they have said
they processed. When a partition changes hands (a consumer joins or leaves) its cursor
goes back to the committed offset, so nothing given to a consumer that went away
without committing is lost; the next owner gets it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from broker.streams.messages import AppMessage
from registry.streams import PARTITIONS, StreamRow, StreamStore, Subscription

log = logging.getLogger("gatehouse.streams")

DEFAULT_GROUP = "DefaultConsumerGroup"  # what enos-subscribe's DataClient sends by default


@dataclass(frozen=True, slots=True)
class RetentionConfig:
    max_messages: int = 100_000  # retained per subscription partition, newest kept
    max_age: float = 7 * 24 * 3600.0  # seconds a retained message is kept
    prune_interval: float = 10.0  # seconds between prunes


def partition_of(key: str) -> int:
    return zlib.crc32(key.encode()) % PARTITIONS


class Consumer:
    """One connected client of a group; compared by identity."""

    def __init__(self, client_id: str) -> None:
        self.client_id = client_id
        self.partitions: tuple[int, ...] = ()


@dataclass(slots=True)
class Group:
    name: str
    committed: list[int]
    cursor: list[int]
    members: list[Consumer] = field(default_factory=list)
    owners: list[Consumer | None] = field(default_factory=lambda: [None] * PARTITIONS)

    def rebalance(self) -> None:
        for partition in range(PARTITIONS):
            owner = self.members[partition % len(self.members)] if self.members else None
            if owner is not self.owners[partition]:
                self.owners[partition] = owner
                self.cursor[partition] = self.committed[partition]  # redeliver the rest
        for member in self.members:
            member.partitions = tuple(p for p in range(PARTITIONS) if self.owners[p] is member)


@dataclass(slots=True)
class SubscriptionLog:
    sub: Subscription
    last: list[int] = field(default_factory=lambda: [0] * PARTITIONS)
    groups: dict[str, Group] = field(default_factory=dict)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    appended: int = 0  # messages retained since start
    delivered: int = 0  # messages handed to consumers since start (redeliveries too)

    def group(self, name: str, committed: Mapping[int, int] | None = None) -> Group:
        found = self.groups.get(name)
        if found is None:
            offsets = [(committed or {}).get(p, 0) for p in range(PARTITIONS)]
            found = self.groups[name] = Group(name, offsets, list(offsets))
        return found

    def backlog(self) -> int:
        """Messages retained that the slowest group has not committed."""
        if not self.groups:
            return 0
        return max(
            sum(max(self.last[p] - g.committed[p], 0) for p in range(PARTITIONS))
            for g in self.groups.values()
        )

    def woken(self) -> None:
        # Wake every waiting pull, then arm a fresh event for the next ones.
        self.arrived.set()
        self.arrived = asyncio.Event()


class Subscriptions:
    """Every subscription's log; fed by the hub, pulled by the subscription server."""

    def __init__(self, store: StreamStore, retention: RetentionConfig | None = None) -> None:
        self.store = store
        self.retention = retention or RetentionConfig()
        self.logs: dict[str, SubscriptionLog] = {}
        self.pruned = 0  # messages dropped by retention since start
        self._pruner: asyncio.Task[None] | None = None

    async def start(self) -> None:
        last = await self.store.last_offsets()
        committed = await self.store.committed_offsets()
        for sub in await self.store.all_subscriptions():
            self.logs[sub.subId] = sub_log = SubscriptionLog(sub)
            for p in range(PARTITIONS):
                sub_log.last[p] = last.get((sub.subId, p), 0)
        by_group: dict[tuple[str, str], dict[int, int]] = {}
        for (sub_id, group, partition), offset in committed.items():
            by_group.setdefault((sub_id, group), {})[partition] = offset
        for (sub_id, group), offsets in by_group.items():
            if sub_id in self.logs:
                self.logs[sub_id].group(group, offsets)
        self._pruner = asyncio.create_task(self._prune_forever(), name="gatehouse-retention")

    async def stop(self) -> None:
        if self._pruner is not None:
            self._pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pruner
            self._pruner = None

    # -- the API's ------------------------------------------------------------------------

    async def add(self, sub: Subscription) -> None:
        await self.store.put_subscription(sub)
        self.logs[sub.subId] = SubscriptionLog(sub)

    async def remove(self, sub_id: str) -> bool:
        removed = self.logs.pop(sub_id, None)
        if removed is not None:
            removed.woken()
        return await self.store.delete_subscription(sub_id)

    def of_org(self, org_id: str) -> list[Subscription]:
        return [s.sub for s in self.logs.values() if s.sub.orgId == org_id]

    # -- the hub's ----------------------------------------------------------------------------

    async def append(self, messages: Iterable[AppMessage]) -> None:
        """Retain each message in every subscription that wants it, in one transaction."""
        now = int(time.time() * 1000)
        rows: list[StreamRow] = []
        last = {sub_id: list(s.last) for sub_id, s in self.logs.items()}
        for message in messages:
            partition, value = -1, ""
            for sub_id, sub_log in self.logs.items():
                if sub_log.sub.orgId != message.org_id or not sub_log.sub.wants(
                    message.product_key, message.kind
                ):
                    continue
                if partition < 0:
                    partition, value = partition_of(message.key), message.json()
                offsets = last[sub_id]
                offsets[partition] += 1
                rows.append((sub_id, partition, offsets[partition], now, message.key, value))
        if not rows:
            return
        await self.store.append_messages(rows)  # StorageUnavailable: the posts are refused
        for sub_id, offsets in last.items():
            held = self.logs.get(sub_id)  # deleted while the batch was written: gone
            if held is not None and offsets != held.last:
                held.appended += sum(offsets) - sum(held.last)
                held.last = offsets
                held.woken()

    # -- the subscription server's ---------------------------------------------------------

    def join(self, sub_id: str, group_name: str, consumer: Consumer) -> Group:
        group = self.logs[sub_id].group(group_name or DEFAULT_GROUP)
        group.members.append(consumer)
        group.rebalance()
        return group

    def leave(self, sub_id: str, group: Group, consumer: Consumer) -> None:
        if consumer in group.members:
            group.members.remove(consumer)
            group.rebalance()
        held = self.logs.get(sub_id)
        if held is not None:
            held.woken()

    async def pull(
        self, sub_id: str, group: Group, consumer: Consumer, limit: int, wait: float
    ) -> list[StreamRow]:
        """Up to `limit` messages of the consumer's partitions past the group's cursor,
        waiting up to `wait` seconds for some to arrive."""
        deadline = time.monotonic() + wait
        while True:
            sub_log = self.logs.get(sub_id)
            if sub_log is None:
                return []
            arrived = sub_log.arrived
            rows: list[StreamRow] = []
            for partition in consumer.partitions:
                start = group.cursor[partition]
                if start >= sub_log.last[partition] or len(rows) >= limit:
                    continue
                got = await self.store.read_messages(sub_id, partition, start, limit - len(rows))
                # A rebalance while reading gave the partition to another consumer.
                if got and group.owners[partition] is consumer and group.cursor[partition] == start:
                    group.cursor[partition] = got[-1][2]
                    rows.extend(got)
            left = deadline - time.monotonic()
            if rows or left <= 0:
                sub_log.delivered += len(rows)
                return rows
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(arrived.wait(), left)

    async def commit(
        self, sub_id: str, group: Group, consumer: Consumer, offsets: Mapping[int, int]
    ) -> None:
        """Record what a consumer says it processed, of the partitions it owns."""
        mine: dict[int, int] = {}
        for partition, offset in offsets.items():
            if partition not in consumer.partitions:
                continue  # a partition taken away meanwhile: its new owner commits it
            offset = min(offset, group.cursor[partition])
            if offset > group.committed[partition]:
                mine[partition] = offset
        if mine:
            await self.store.commit_offsets(sub_id, group.name, mine)
            for partition, offset in mine.items():
                group.committed[partition] = max(group.committed[partition], offset)

    # -- retention ----------------------------------------------------------------------------

    async def _prune_forever(self) -> None:
        while True:
            await asyncio.sleep(self.retention.prune_interval)
            try:
                await self.prune()
            except Exception:
                log.exception("pruning the subscriptions' retained messages failed")

    async def prune(self) -> None:
        before = int((time.time() - self.retention.max_age) * 1000)
        for sub_id, sub_log in list(self.logs.items()):
            for partition in range(PARTITIONS):
                upto = sub_log.last[partition] - self.retention.max_messages
                self.pruned += await self.store.prune_messages(sub_id, partition, upto, before)
