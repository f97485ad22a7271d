"""The registry's queries, once, in SQL both stores speak; each store supplies the
connection, the transactions, the placeholders and the name of its insertion order.

Queries are written with `?` placeholders (PostgreSQL's store numbers them). What
SQLite and PostgreSQL spell differently is kept out of here: `ORDER` is SQLite's rowid
or PostgreSQL's `seq` column, and an upsert is `ON CONFLICT ... DO UPDATE`, which both
understand.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from registry.activation import AccessKey, ActivationCode, CodeTotals
from registry.models import (
    Binding,
    Certificate,
    Command,
    Device,
    Organization,
    Product,
    ProductImage,
    ProductStats,
    Project,
    ThingModel,
    Topology,
)
from registry.scripts import ProductScript
from registry.store import rows as records
from registry.store.protocols import LatestRow, LogRow, PresenceRow
from registry.store.rows import Row, to_json


class Tx(Protocol):
    """A transaction's statements; `execute` returns the rows it changed."""

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> int: ...
    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...


class SqlQueries:
    """Every store method, on the primitives a driver provides."""

    ORDER = "rowid"  # the column that keeps insertion order

    async def _one(self, sql: str, args: Sequence[Any] = ()) -> Row | None:
        raise NotImplementedError

    async def _all(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        raise NotImplementedError

    def _tx(self) -> contextlib.AbstractAsyncContextManager[Tx]:
        """One transaction: committed at the end of the block, rolled back on an error."""
        raise NotImplementedError

    async def _write(self, sql: str, args: Sequence[Any] = ()) -> int:
        async with self._tx() as tx:
            return await tx.execute(sql, args)

    # ------------------------------------------------------------------ db copy
    # (each store lists and reads its own tables: their catalogues and orders differ)

    async def write_table(
        self, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
    ) -> None:
        marks = ", ".join("?" * len(columns))
        async with self._tx() as tx:
            await tx.executemany(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})",  # noqa: S608
                rows,
            )

    async def count_rows(self, table: str) -> int:
        row = await self._one(f"SELECT COUNT(*) FROM {table}")  # noqa: S608
        return int(row[0]) if row else 0

    # ------------------------------------------------------------------ organizations

    async def insert_org(self, org: Organization) -> None:
        await self._write(
            "INSERT INTO organizations VALUES (?, ?, ?, ?, ?, ?)",
            (org.orgId, org.name, org.accessKey, org.secretHash, int(org.admin), org.createdAt),
        )

    async def get_org(self, org_id: str) -> Organization | None:
        row = await self._one("SELECT * FROM organizations WHERE org_id = ?", (org_id,))
        return records.org(row) if row else None

    async def get_org_by_access_key(self, access_key: str) -> Organization | None:
        row = await self._one("SELECT * FROM organizations WHERE access_key = ?", (access_key,))
        return records.org(row) if row else None

    async def admin_org(self) -> Organization | None:
        row = await self._one("SELECT * FROM organizations WHERE admin = 1 ORDER BY created_at")
        return records.org(row) if row else None

    async def count_orgs(self) -> int:
        row = await self._one("SELECT COUNT(*) FROM organizations")
        return int(row[0]) if row else 0

    # ------------------------------------------------------------------ thing models

    async def insert_model(self, model: ThingModel) -> None:
        await self._write(
            "INSERT INTO thing_models VALUES (?, ?, ?, ?, ?, ?)",
            (
                model.orgId,
                model.modelId,
                model.name,
                model.desc,
                to_json(model.tsl),
                model.createdAt,
            ),
        )

    async def replace_model(self, model: ThingModel) -> None:
        await self._write(
            "UPDATE thing_models SET name = ?, description = ?, tsl = ?"
            " WHERE org_id = ? AND model_id = ?",
            (model.name, model.desc, to_json(model.tsl), model.orgId, model.modelId),
        )

    async def get_model(self, org_id: str, model_id: str) -> ThingModel | None:
        row = await self._one(
            "SELECT * FROM thing_models WHERE org_id = ? AND model_id = ?", (org_id, model_id)
        )
        return records.model(row) if row else None

    async def list_models(self, org_id: str, offset: int, limit: int) -> list[ThingModel]:
        rows = await self._all(
            "SELECT * FROM thing_models WHERE org_id = ? ORDER BY model_id LIMIT ? OFFSET ?",
            (org_id, limit, offset),
        )
        return [records.model(r) for r in rows]

    async def delete_model(self, org_id: str, model_id: str) -> bool:
        return (
            await self._write(
                "DELETE FROM thing_models WHERE org_id = ? AND model_id = ?", (org_id, model_id)
            )
            > 0
        )

    async def products_using_model(self, org_id: str, model_id: str) -> list[str]:
        rows = await self._all(
            "SELECT product_key FROM products WHERE org_id = ? AND model_id = ?", (org_id, model_id)
        )
        return [r[0] for r in rows]

    # ------------------------------------------------------------------ products

    # A product row with whether it has an image (product_images), on both stores.
    PRODUCT_SELECT = (
        "SELECT p.*, EXISTS (SELECT 1 FROM product_images i"
        " WHERE i.product_key = p.product_key) AS has_image FROM products p"
    )

    async def insert_product(self, product: Product) -> None:
        await self._write(
            "INSERT INTO products (product_key, org_id, name, model_id, product_secret,"
            " settings, created_at, project_id, dev_status, released_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            self._product_row(product),
        )

    async def replace_product(self, product: Product) -> None:
        await self._write(
            "UPDATE products SET name = ?, model_id = ?, settings = ?, dev_status = ?,"
            " released_at = ? WHERE product_key = ?",
            (
                product.settings.productName.defaultValue,
                product.settings.modelId,
                product.settings.model_dump_json(),
                product.developmentStatus,
                product.releasedAt,
                product.productKey,
            ),
        )

    @staticmethod
    def _product_row(product: Product) -> tuple[Any, ...]:
        return (
            product.productKey,
            product.orgId,
            product.settings.productName.defaultValue,
            product.settings.modelId,
            product.productSecret,
            product.settings.model_dump_json(),
            product.createdAt,
            product.projectId,
            product.developmentStatus,
            product.releasedAt,
        )

    async def get_product(self, product_key: str) -> Product | None:
        row = await self._one(f"{self.PRODUCT_SELECT} WHERE p.product_key = ?", (product_key,))
        return records.product(row) if row else None

    async def product_named(self, org_id: str, name: str) -> str | None:
        row = await self._one(
            "SELECT product_key FROM products WHERE org_id = ? AND name = ?", (org_id, name)
        )
        return str(row[0]) if row else None

    async def list_products(
        self, org_id: str, offset: int, limit: int, project_id: str | None = None
    ) -> list[Product]:
        """The organisation's products (of one project, if named), newest first."""
        where, args = self._product_filter(org_id, project_id)
        rows = await self._all(
            f"{self.PRODUCT_SELECT} WHERE {where} ORDER BY p.{self.ORDER} DESC LIMIT ? OFFSET ?",
            (*args, limit, offset),
        )
        return [records.product(r) for r in rows]

    @staticmethod
    def _product_filter(org_id: str, project_id: str | None) -> tuple[str, tuple[str, ...]]:
        if project_id is None:
            return "p.org_id = ?", (org_id,)
        return "p.org_id = ? AND p.project_id = ?", (org_id, project_id)

    async def count_products(self, org_id: str, project_id: str | None = None) -> int:
        where, args = self._product_filter(org_id, project_id)
        row = await self._one(f"SELECT COUNT(*) FROM products p WHERE {where}", args)  # noqa: S608
        return int(row[0]) if row else 0

    async def delete_product(self, product_key: str) -> None:
        await self._write("DELETE FROM products WHERE product_key = ?", (product_key,))

    # ------------------------------------------------------------------ devices

    async def insert_devices(self, devices: Iterable[Device]) -> None:
        """All or nothing: one transaction, one executemany."""
        rows = [
            (
                d.orgId,
                d.productKey,
                d.deviceKey,
                d.deviceSecret,
                d.assetId,
                d.deviceName.model_dump_json(),
                d.timezone,
                d.deviceDesc,
                to_json(d.deviceAttributes),
                to_json(d.deviceTags),
                int(d.enabled),
                int(d.online),
                d.activatedAt,
                d.lastSeenAt,
                d.createdAt,
            )
            for d in devices
        ]
        async with self._tx() as db:
            await db.executemany(
                f"INSERT INTO devices ({records.DEVICE_COLUMNS}) VALUES ({', '.join('?' * 15)})",  # noqa: S608
                rows,
            )

    async def get_device(self, product_key: str, device_key: str) -> Device | None:
        row = await self._one(
            "SELECT * FROM devices WHERE product_key = ? AND device_key = ?",
            (product_key, device_key),
        )
        return records.device(row) if row else None

    async def get_device_by_asset(self, asset_id: str) -> Device | None:
        row = await self._one("SELECT * FROM devices WHERE asset_id = ?", (asset_id,))
        return records.device(row) if row else None

    async def list_devices(self, product_key: str, offset: int, limit: int) -> list[Device]:
        rows = await self._all(
            f"SELECT * FROM devices WHERE product_key = ? ORDER BY {self.ORDER} LIMIT ? OFFSET ?",  # noqa: S608
            (product_key, limit, offset),
        )
        return [records.device(r) for r in rows]

    async def count_devices(self, product_key: str) -> int:
        row = await self._one("SELECT COUNT(*) FROM devices WHERE product_key = ?", (product_key,))
        return int(row[0]) if row else 0

    async def existing_device_keys(self, product_key: str, keys: Sequence[str]) -> set[str]:
        found: set[str] = set()
        # SQLite caps bound variables; ask in slices.
        for start in range(0, len(keys), 500):
            part = keys[start : start + 500]
            marks = ", ".join("?" * len(part))
            rows = await self._all(
                f"SELECT device_key FROM devices WHERE product_key = ? AND device_key IN ({marks})",  # noqa: S608
                (product_key, *part),
            )
            found.update(r[0] for r in rows)
        return found

    async def replace_device(self, device: Device) -> None:
        """Write what the API may change; presence columns belong to `write_behind`."""
        await self._write(
            "UPDATE devices SET name = ?, timezone = ?, description = ?, attributes = ?, tags = ?,"
            " enabled = ? WHERE product_key = ? AND device_key = ?",
            (
                device.deviceName.model_dump_json(),
                device.timezone,
                device.deviceDesc,
                to_json(device.deviceAttributes),
                to_json(device.deviceTags),
                int(device.enabled),
                device.productKey,
                device.deviceKey,
            ),
        )

    async def delete_device(self, product_key: str, device_key: str, when: int) -> None:
        async with self._tx() as db:
            for table in ("device_latest", "device_log", "commands", "devices"):
                await db.execute(
                    f"DELETE FROM {table} WHERE product_key = ? AND device_key = ?",  # noqa: S608
                    (product_key, device_key),
                )
            # The certificates stay, revoked: a device made again with the same key must
            # not inherit them, and a restart must still know their serials are dead.
            await db.execute(
                "UPDATE certificates SET revoked_at = ?"
                " WHERE product_key = ? AND device_key = ? AND revoked_at IS NULL",
                (when, product_key, device_key),
            )

    async def all_devices(self) -> list[Device]:
        return [records.device(r) for r in await self._all("SELECT * FROM devices")]

    async def all_products(self) -> list[Product]:
        return [records.product(r) for r in await self._all(self.PRODUCT_SELECT)]

    async def all_orgs(self) -> list[Organization]:
        return [records.org(r) for r in await self._all("SELECT * FROM organizations")]

    # ------------------------------------------------------------------ written behind

    async def reset_presence(self) -> int:
        """Mark every device offline: nothing is connected to a broker that just started."""
        return await self._write("UPDATE devices SET online = 0 WHERE online = 1")

    async def write_behind(
        self,
        presence: Sequence[PresenceRow],
        log: Sequence[LogRow],
        latest: Sequence[LatestRow],
        commands: Sequence[tuple[Command, bool]] = (),
    ) -> None:
        """One transaction for a batch of the broker's writes; `commands` are (command,
        new) in the order written: new ones inserted, the others' changes updated."""
        async with self._tx() as db:
            # Every insert first: a command's insert precedes its updates in the batch.
            inserts = [_command_row(c) for c, new in commands if new]
            if inserts:
                await db.executemany(self.COMMAND_INSERT, inserts)
            updates = [_command_change(c) for c, new in commands if not new]
            if updates:
                await db.executemany(self.COMMAND_UPDATE, updates)
            if presence:
                await db.executemany(
                    "UPDATE devices SET online = ?, last_seen_at = ?,"
                    " activated_at = COALESCE(activated_at, ?)"
                    " WHERE product_key = ? AND device_key = ?",
                    presence,
                )
            if log:
                await db.executemany(
                    "INSERT INTO device_log"
                    " (product_key, device_key, ts, kind, topic, payload, code, detail)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    log,
                )
            if latest:
                await db.executemany(
                    "INSERT INTO device_latest VALUES (?, ?, ?, ?, ?)"
                    " ON CONFLICT (product_key, device_key, identifier)"
                    " DO UPDATE SET value = excluded.value, ts = excluded.ts"
                    " WHERE excluded.ts >= device_latest.ts",
                    latest,
                )

    async def prune_log(self, keep: int) -> int:
        """Keep the newest `keep` log rows (the log is a bounded ring)."""
        return await self._write(
            "DELETE FROM device_log WHERE seq <= (SELECT MAX(seq) FROM device_log) - ?", (keep,)
        )

    async def latest_values(self, product_key: str, device_key: str) -> list[LatestRow]:
        rows = await self._all(
            "SELECT * FROM device_latest WHERE product_key = ? AND device_key = ?"
            " ORDER BY identifier",
            (product_key, device_key),
        )
        return [
            (r["product_key"], r["device_key"], r["identifier"], r["value"], r["ts"]) for r in rows
        ]

    async def device_log(
        self, product_key: str, device_key: str, kinds: Sequence[str], limit: int
    ) -> list[LogRow]:
        """The device's newest log rows of the given kinds, newest first."""
        marks = ", ".join("?" * len(kinds))
        query = f"SELECT * FROM device_log WHERE product_key = ? AND device_key = ? AND kind IN ({marks}) ORDER BY seq DESC LIMIT ?"  # noqa: S608, E501
        rows = await self._all(
            query,
            (product_key, device_key, *kinds, limit),
        )
        return [_log_row(r) for r in rows]

    async def log_page(
        self,
        product_key: str,
        device_key: str | None,
        kinds: Sequence[str],
        since: int | None,
        limit: int,
    ) -> list[tuple[int, LogRow]]:
        """Log rows of a product, or of one device of it, of the given kinds, each with
        its seq: after `since` oldest first (a poller's cursor), without it newest first.
        The one write-behind writes the log, so seq order is commit order."""
        marks = ", ".join("?" * len(kinds))
        where = ["product_key = ?", f"kind IN ({marks})"]
        args: list[Any] = [product_key, *kinds]
        if device_key is not None:
            where.append("device_key = ?")
            args.append(device_key)
        if since is not None:
            where.append("seq > ?")
            args.append(since)
        order = "ASC" if since is not None else "DESC"
        query = f"SELECT * FROM device_log WHERE {' AND '.join(where)} ORDER BY seq {order} LIMIT ?"  # noqa: S608
        rows = await self._all(query, (*args, limit))
        return [(r["seq"], _log_row(r)) for r in rows]

    async def product_stats(self, product_key: str) -> ProductStats:
        row = await self._one(
            "SELECT COUNT(*), COUNT(activated_at), COALESCE(SUM(online), 0)"
            " FROM devices WHERE product_key = ?",
            (product_key,),
        )
        total, activated, online = (int(v) for v in row) if row else (0, 0, 0)
        return ProductStats(productKey=product_key, total=total, activated=activated, online=online)

    # ------------------------------------------------------------------ bindings

    async def list_bindings(self, product_key: str, device_key: str) -> list[Binding]:
        rows = await self._all(
            "SELECT * FROM bindings WHERE product_key = ? AND device_key = ? ORDER BY created_at",
            (product_key, device_key),
        )
        return [records.binding(r) for r in rows]

    async def replace_bindings(
        self, product_key: str, device_key: str, remove: Sequence[str], add: Binding | None
    ) -> None:
        """Remove some users' bindings and add one, in one transaction."""
        async with self._tx() as db:
            for user_id in remove:
                await db.execute(
                    "DELETE FROM bindings WHERE product_key = ? AND device_key = ?"
                    " AND (user_id = ? OR shared_by = ?)",
                    (product_key, device_key, user_id, user_id),
                )
            if add is not None:
                await db.execute(
                    "INSERT INTO bindings VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        add.productKey,
                        add.deviceKey,
                        add.userId,
                        add.role,
                        add.sharedBy,
                        add.createdAt,
                    ),
                )

    async def devices_with_owners(self, product_key: str, at_least: int) -> int:
        row = await self._one(
            "SELECT COUNT(*) FROM (SELECT device_key FROM bindings"
            " WHERE product_key = ? AND role = 'owner'"
            " GROUP BY device_key HAVING COUNT(*) >= ?) AS owners",
            (product_key, at_least),
        )
        return int(row[0]) if row else 0

    # ------------------------------------------------------------------ commands

    COMMAND_INSERT = (
        f"INSERT INTO commands ({', '.join(records.COMMAND_COLUMNS)})"  # noqa: S608
        f" VALUES ({', '.join('?' * len(records.COMMAND_COLUMNS))})"
    )
    # What changes as a command moves on: its state and what it got back.
    COMMAND_UPDATE = (
        "UPDATE commands SET state = ?, sent_at = ?, reply_by = ?, finished_at = ?,"
        " reply_code = ?, output = ?, message = ?, mismatch = ? WHERE command_id = ?"
    )

    async def insert_command(self, command: Command) -> None:
        await self._write(self.COMMAND_INSERT, _command_row(command))

    async def update_command(self, command: Command) -> None:
        await self._write(self.COMMAND_UPDATE, _command_change(command))

    async def get_command(self, command_id: str) -> Command | None:
        row = await self._one("SELECT * FROM commands WHERE command_id = ?", (command_id,))
        return records.command(row) if row else None

    async def list_commands(self, product_key: str, device_key: str, limit: int) -> list[Command]:
        rows = await self._all(
            "SELECT * FROM commands WHERE product_key = ? AND device_key = ?"  # noqa: S608
            f" ORDER BY created_at DESC, {self.ORDER} DESC LIMIT ?",
            (product_key, device_key, limit),
        )
        return [records.command(r) for r in rows]

    async def open_commands(self) -> list[Command]:
        """Every pending or sent command, oldest first (to rebuild the queues at start)."""
        rows = await self._all(
            "SELECT * FROM commands WHERE state IN ('pending', 'sent')"  # noqa: S608
            f" ORDER BY created_at, {self.ORDER}"
        )
        return [records.command(r) for r in rows]

    # ------------------------------------------------------------------ certificates

    async def insert_certificate(self, cert: Certificate) -> None:
        await self._write(
            "INSERT INTO certificates VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                cert.certSN,
                cert.orgId,
                cert.productKey,
                cert.deviceKey,
                cert.certPem,
                cert.notBefore,
                cert.notAfter,
                cert.revokedAt,
                cert.createdAt,
            ),
        )

    async def revoke_certificate(self, serial: str, when: int) -> bool:
        return (
            await self._write(
                "UPDATE certificates SET revoked_at = ? WHERE serial = ? AND revoked_at IS NULL",
                (when, serial),
            )
            > 0
        )

    async def list_certificates(
        self, product_key: str, device_key: str, since: int
    ) -> list[Certificate]:
        """The certificates issued since `since` (the device's creation: not its forebears')."""
        rows = await self._all(
            "SELECT * FROM certificates WHERE product_key = ? AND device_key = ?"
            " AND created_at >= ? ORDER BY created_at DESC",
            (product_key, device_key, since),
        )
        return [records.certificate(r) for r in rows]

    async def revoked_serials(self) -> list[str]:
        rows = await self._all("SELECT serial FROM certificates WHERE revoked_at IS NOT NULL")
        return [r[0] for r in rows]

    async def live_certificates(self) -> list[tuple[str, str, str]]:
        """(serial, ProductKey, DeviceKey) of every certificate not revoked."""
        rows = await self._all(
            "SELECT serial, product_key, device_key FROM certificates WHERE revoked_at IS NULL"
        )
        return [(r[0], r[1], r[2]) for r in rows]

    # ------------------------------------------------------------------ topology

    async def put_topology(self, topo: Topology) -> None:
        await self._write(
            "INSERT INTO topology VALUES (?, ?, ?, ?, ?) ON CONFLICT (product_key, device_key)"
            " DO UPDATE SET gateway_product_key = excluded.gateway_product_key,"
            " gateway_device_key = excluded.gateway_device_key, created_at = excluded.created_at",
            (
                topo.productKey,
                topo.deviceKey,
                topo.gatewayProductKey,
                topo.gatewayDeviceKey,
                topo.createdAt,
            ),
        )

    async def get_topology(self, product_key: str, device_key: str) -> Topology | None:
        row = await self._one(
            "SELECT * FROM topology WHERE product_key = ? AND device_key = ?",
            (product_key, device_key),
        )
        return records.topology(row) if row else None

    async def list_sub_devices(self, gateway_pk: str, gateway_dk: str) -> list[Device]:
        rows = await self._all(
            "SELECT d.* FROM topology t JOIN devices d"
            " ON d.product_key = t.product_key AND d.device_key = t.device_key"
            " WHERE t.gateway_product_key = ? AND t.gateway_device_key = ? ORDER BY t.created_at",
            (gateway_pk, gateway_dk),
        )
        return [records.device(r) for r in rows]

    async def all_topology(self) -> list[Topology]:
        return [records.topology(r) for r in await self._all("SELECT * FROM topology")]

    async def list_topology(self, gateway_pk: str, gateway_dk: str) -> list[Topology]:
        rows = await self._all(
            "SELECT * FROM topology WHERE gateway_product_key = ? AND gateway_device_key = ?"
            " ORDER BY created_at",
            (gateway_pk, gateway_dk),
        )
        return [records.topology(r) for r in rows]

    async def delete_topology(self, product_key: str, device_key: str) -> bool:
        return (
            await self._write(
                "DELETE FROM topology WHERE product_key = ? AND device_key = ?",
                (product_key, device_key),
            )
            > 0
        )

    # ------------------------------------------------------------------ product scripts

    async def put_product_script(self, script: ProductScript) -> None:
        await self._write(
            "INSERT INTO product_scripts"
            " (product_key, org_id, script_type, content, version, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (product_key) DO UPDATE SET"
            " script_type = excluded.script_type, content = excluded.content,"
            " version = excluded.version, updated_at = excluded.updated_at",
            (
                script.productKey,
                script.orgId,
                script.scriptType,
                script.scriptContent,
                script.version,
                script.updatedAt,
            ),
        )

    async def get_product_script(self, product_key: str) -> ProductScript | None:
        row = await self._one("SELECT * FROM product_scripts WHERE product_key = ?", (product_key,))
        return records.product_script(row) if row else None

    async def all_product_scripts(self) -> list[ProductScript]:
        return [records.product_script(r) for r in await self._all("SELECT * FROM product_scripts")]

    async def delete_product_script(self, product_key: str) -> bool:
        deleted = await self._write(
            "DELETE FROM product_scripts WHERE product_key = ?", (product_key,)
        )
        return deleted > 0

    # ------------------------------------------------------------------ projects

    async def insert_project(self, project: Project) -> None:
        await self._write(
            "INSERT INTO projects (org_id, project_id, name, description, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (
                project.orgId,
                project.projectId,
                project.name,
                project.description,
                project.createdAt,
            ),
        )

    async def get_project(self, org_id: str, project_id: str) -> Project | None:
        row = await self._one(
            "SELECT * FROM projects WHERE org_id = ? AND project_id = ?", (org_id, project_id)
        )
        return records.project(row) if row else None

    async def list_projects(self, org_id: str) -> list[Project]:
        rows = await self._all(
            "SELECT * FROM projects WHERE org_id = ? ORDER BY created_at, project_id", (org_id,)
        )
        return [records.project(r) for r in rows]

    # ------------------------------------------------------------------ product images

    async def put_product_image(self, image: ProductImage) -> None:
        await self._write(
            "INSERT INTO product_images (product_key, content_type, content, updated_at)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (product_key) DO UPDATE SET"
            " content_type = excluded.content_type, content = excluded.content,"
            " updated_at = excluded.updated_at",
            (image.productKey, image.contentType, image.content, image.updatedAt),
        )

    async def get_product_image(self, product_key: str) -> ProductImage | None:
        row = await self._one("SELECT * FROM product_images WHERE product_key = ?", (product_key,))
        return records.product_image(row) if row else None

    async def delete_product_image(self, product_key: str) -> bool:
        deleted = await self._write(
            "DELETE FROM product_images WHERE product_key = ?", (product_key,)
        )
        return deleted > 0

    # ------------------------------------------------------------------ activation codes

    async def insert_activation_codes(self, codes: Sequence[ActivationCode]) -> None:
        async with self._tx() as tx:
            await tx.executemany(
                "INSERT INTO activation_codes (code, product_key, batch_id, valid_seconds,"
                " purchased_at, device_key, consumed_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        c.code,
                        c.productKey,
                        c.batchId,
                        c.validSeconds,
                        c.purchasedAt,
                        c.deviceKey,
                        c.consumedAt,
                        c.expiresAt,
                    )
                    for c in codes
                ],
            )

    async def all_activation_codes(self) -> list[ActivationCode]:
        """Every code, each product's in the order they were bought (the order taken)."""
        rows = await self._all(
            f"SELECT * FROM activation_codes ORDER BY purchased_at, {self.ORDER}"  # noqa: S608
        )
        return [records.activation_code(r) for r in rows]

    async def list_activation_codes(
        self, product_key: str, offset: int, limit: int
    ) -> list[ActivationCode]:
        rows = await self._all(
            "SELECT * FROM activation_codes WHERE product_key = ?"  # noqa: S608
            f" ORDER BY purchased_at, {self.ORDER} LIMIT ? OFFSET ?",
            (product_key, limit, offset),
        )
        return [records.activation_code(r) for r in rows]

    async def consume_activation_code(
        self, code: str, device_key: str, consumed_at: int, expires_at: int
    ) -> bool:
        """Give a free code to a device; False if it was taken (or is gone)."""
        changed = await self._write(
            "UPDATE activation_codes SET device_key = ?, consumed_at = ?, expires_at = ?"
            " WHERE code = ? AND device_key IS NULL",
            (device_key, consumed_at, expires_at, code),
        )
        return changed > 0

    async def activation_code_totals(self, product_key: str, now_ms: int) -> CodeTotals:
        row = await self._one(
            "SELECT COUNT(*), COUNT(device_key),"
            " COALESCE(SUM(CASE WHEN expires_at > ? THEN 1 ELSE 0 END), 0)"
            " FROM activation_codes WHERE product_key = ?",
            (now_ms, product_key),
        )
        total, consumed, in_use = (int(v) for v in row) if row else (0, 0, 0)
        return CodeTotals(
            productKey=product_key,
            total=total,
            available=total - consumed,
            consumed=consumed,
            inUse=in_use,
        )

    async def deactivate_device(self, product_key: str, device_key: str) -> None:
        """The device is inactive again (its activation code ran out)."""
        await self._write(
            "UPDATE devices SET activated_at = NULL WHERE product_key = ? AND device_key = ?",
            (product_key, device_key),
        )

    # ------------------------------------------------------------------ access keys

    async def insert_access_key(self, key: AccessKey) -> None:
        await self._write(
            "INSERT INTO access_keys (access_key, org_id, secret_hash, permission,"
            " description, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (
                key.accessKey,
                key.orgId,
                key.secretHash,
                key.permission,
                key.description,
                key.createdAt,
            ),
        )

    async def get_access_key(self, access_key: str) -> AccessKey | None:
        row = await self._one("SELECT * FROM access_keys WHERE access_key = ?", (access_key,))
        return records.access_key(row) if row else None

    async def list_access_keys(self, org_id: str) -> list[AccessKey]:
        rows = await self._all(
            "SELECT * FROM access_keys WHERE org_id = ? ORDER BY created_at, access_key",
            (org_id,),
        )
        return [records.access_key(r) for r in rows]

    async def delete_access_key(self, org_id: str, access_key: str) -> bool:
        deleted = await self._write(
            "DELETE FROM access_keys WHERE org_id = ? AND access_key = ?", (org_id, access_key)
        )
        return deleted > 0


def _log_row(row: Row) -> LogRow:
    return (
        row["product_key"],
        row["device_key"],
        row["ts"],
        row["kind"],
        row["topic"],
        row["payload"],
        row["code"],
        row["detail"],
    )


def _command_row(command: Command) -> list[Any]:
    values = command.model_dump()
    return [values[field] for field in records.COMMAND_FIELDS]


def _command_change(command: Command) -> tuple[Any, ...]:
    return (
        command.state,
        command.sentAt,
        command.replyBy,
        command.finishedAt,
        command.replyCode,
        command.output,
        command.message,
        command.mismatch,
        command.commandId,
    )
