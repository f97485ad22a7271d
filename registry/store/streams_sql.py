"""`StreamStore` in the registry's own database, SQLite or PostgreSQL: the queries are in
SQL both speak and run on the store's connection and transactions (`SqlQueries`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from registry.store import rows as records
from registry.store.rows import Row, to_json
from registry.store.sql import SqlQueries
from registry.streams import StreamRow, Subscription, Webhook


class SqlStreamStore:
    def __init__(self, store: SqlQueries) -> None:
        self.store = store

    async def _all(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        return await self.store._all(sql, args)

    async def _write(self, sql: str, args: Sequence[Any] = ()) -> int:
        return await self.store._write(sql, args)

    # -- subscriptions -------------------------------------------------------------------

    async def put_subscription(self, sub: Subscription) -> None:
        await self._write(
            "INSERT INTO subscriptions"
            " (sub_id, org_id, name, product_keys, kinds, access_key, access_secret, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                sub.subId,
                sub.orgId,
                sub.name,
                to_json(sub.productKeys),
                to_json(sub.kinds),
                sub.accessKey,
                sub.accessSecret,
                sub.createdAt,
            ),
        )

    async def delete_subscription(self, sub_id: str) -> bool:
        async with self.store._tx() as tx:
            await tx.execute("DELETE FROM subscription_messages WHERE sub_id = ?", (sub_id,))
            await tx.execute("DELETE FROM subscription_offsets WHERE sub_id = ?", (sub_id,))
            removed = await tx.execute("DELETE FROM subscriptions WHERE sub_id = ?", (sub_id,))
        return removed > 0

    async def all_subscriptions(self) -> list[Subscription]:
        rows = await self._all("SELECT * FROM subscriptions ORDER BY created_at, sub_id")
        return [records.subscription(r) for r in rows]

    # -- retained messages ------------------------------------------------------------------

    async def append_messages(self, rows: Sequence[StreamRow]) -> None:
        async with self.store._tx() as tx:
            await tx.executemany(
                "INSERT INTO subscription_messages"
                " (sub_id, part, pos, ts, msg_key, value) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT DO NOTHING",
                rows,
            )

    async def read_messages(
        self, sub_id: str, partition: int, after: int, limit: int
    ) -> list[StreamRow]:
        rows = await self._all(
            "SELECT sub_id, part, pos, ts, msg_key, value FROM subscription_messages"
            " WHERE sub_id = ? AND part = ? AND pos > ? ORDER BY pos LIMIT ?",
            (sub_id, partition, after, limit),
        )
        return [(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]

    async def last_offsets(self) -> dict[tuple[str, int], int]:
        rows = await self._all(
            "SELECT sub_id, part, MAX(pos) FROM subscription_messages GROUP BY sub_id, part"
        )
        return {(r[0], r[1]): r[2] for r in rows}

    async def prune_messages(self, sub_id: str, partition: int, upto: int, before_ts: int) -> int:
        return await self._write(
            "DELETE FROM subscription_messages WHERE sub_id = ? AND part = ?"
            " AND (pos <= ? OR ts < ?)",
            (sub_id, partition, upto, before_ts),
        )

    # -- consumer groups ---------------------------------------------------------------------

    async def commit_offsets(self, sub_id: str, group: str, offsets: Mapping[int, int]) -> None:
        async with self.store._tx() as tx:
            await tx.executemany(
                "INSERT INTO subscription_offsets (sub_id, group_name, part, pos)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (sub_id, group_name, part)"
                " DO UPDATE SET pos = excluded.pos WHERE excluded.pos > subscription_offsets.pos",
                [(sub_id, group, p, o) for p, o in offsets.items()],
            )

    async def committed_offsets(self) -> dict[tuple[str, str, int], int]:
        rows = await self._all("SELECT sub_id, group_name, part, pos FROM subscription_offsets")
        return {(r[0], r[1], r[2]): r[3] for r in rows}

    # -- webhooks ------------------------------------------------------------------------------

    async def put_webhook(self, hook: Webhook) -> None:
        await self._write(
            "INSERT INTO webhooks (webhook_id, org_id, url, product_keys, kinds, secret,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                hook.webhookId,
                hook.orgId,
                hook.url,
                to_json(hook.productKeys),
                to_json(hook.kinds),
                hook.secret,
                hook.createdAt,
            ),
        )

    async def delete_webhook(self, webhook_id: str) -> bool:
        return await self._write("DELETE FROM webhooks WHERE webhook_id = ?", (webhook_id,)) > 0

    async def all_webhooks(self) -> list[Webhook]:
        rows = await self._all("SELECT * FROM webhooks ORDER BY created_at, webhook_id")
        return [records.webhook(r) for r in rows]
