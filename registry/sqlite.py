"""The embedded store: SQLite through aiosqlite, in WAL mode, with versioned migrations.

It only reads and writes records; every rule lives in `registry.registry`.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import Any

import aiosqlite
import orjson

from registry.errors import StorageUnavailable
from registry.migrations import MIGRATIONS
from registry.models import (
    Binding,
    Certificate,
    Command,
    Device,
    I18nString,
    Organization,
    Product,
    ProductSettings,
    ProductStats,
    ThingModel,
    Topology,
)
from registry.scripts import ProductScript

# (online, last_seen_at, activated_at if first seen, product_key, device_key)
PresenceRow = tuple[int, int, int | None, str, str]
# (product_key, device_key, ts, kind, topic, payload, code, detail)
LogRow = tuple[str, str, int, str, str, bytes | None, int | None, str]
# (product_key, device_key, identifier, value as JSON, ts)
LatestRow = tuple[str, str, str, str, int]


# SQLite's primary result codes that mean the file cannot be used as it is, rather
# than a fault in the statement (https://sqlite.org/rescode.html).
_UNAVAILABLE = {
    "SQLITE_FULL",
    "SQLITE_IOERR",
    "SQLITE_READONLY",
    "SQLITE_CANTOPEN",
    "SQLITE_CORRUPT",
    "SQLITE_NOTADB",
    "SQLITE_PERM",
    "SQLITE_BUSY",
    "SQLITE_LOCKED",
}


def _unavailable(exc: sqlite3.Error) -> bool:
    name = getattr(exc, "sqlite_errorname", None) or ""
    return "_".join(name.split("_")[:2]) in _UNAVAILABLE  # SQLITE_IOERR_WRITE -> SQLITE_IOERR


def _reason(exc: sqlite3.Error) -> str:
    """What is wrong, in SQLite's words, with the disk's own where it has one."""
    return str(exc) or type(exc).__name__


DEVICE_COLUMNS = (
    "org_id, product_key, device_key, device_secret, asset_id, name, timezone, description,"
    " attributes, tags, enabled, online, activated_at, last_seen_at, created_at"
)


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _device(row: sqlite3.Row) -> Device:
    return Device(
        orgId=row["org_id"],
        productKey=row["product_key"],
        deviceKey=row["device_key"],
        deviceSecret=row["device_secret"],
        assetId=row["asset_id"],
        deviceName=I18nString.model_validate(orjson.loads(row["name"])),
        timezone=row["timezone"],
        deviceDesc=row["description"],
        deviceAttributes=orjson.loads(row["attributes"]),
        deviceTags=orjson.loads(row["tags"]),
        enabled=bool(row["enabled"]),
        online=bool(row["online"]),
        activatedAt=row["activated_at"],
        lastSeenAt=row["last_seen_at"],
        createdAt=row["created_at"],
    )


def _product(row: sqlite3.Row) -> Product:
    return Product(
        orgId=row["org_id"],
        productKey=row["product_key"],
        productSecret=row["product_secret"],
        settings=ProductSettings.model_validate(orjson.loads(row["settings"])),
        createdAt=row["created_at"],
    )


def _model(row: sqlite3.Row) -> ThingModel:
    return ThingModel(
        orgId=row["org_id"],
        modelId=row["model_id"],
        name=row["name"],
        desc=row["description"],
        tsl=orjson.loads(row["tsl"]),
        createdAt=row["created_at"],
    )


# Command fields and their columns, in the table's order.
COMMAND_FIELDS = (
    "commandId",
    "orgId",
    "productKey",
    "deviceKey",
    "kind",
    "serviceId",
    "input",
    "requestId",
    "state",
    "createdAt",
    "timeoutMs",
    "expiresAt",
    "sentAt",
    "replyBy",
    "finishedAt",
    "replyCode",
    "output",
    "message",
    "mismatch",
)
COMMAND_COLUMNS = (
    "command_id",
    "org_id",
    "product_key",
    "device_key",
    "kind",
    "service_id",
    "input",
    "request_id",
    "state",
    "created_at",
    "timeout_ms",
    "expires_at",
    "sent_at",
    "reply_by",
    "finished_at",
    "reply_code",
    "output",
    "message",
    "mismatch",
)


def _command(row: sqlite3.Row) -> Command:
    return Command.model_validate(
        {field: row[column] for field, column in zip(COMMAND_FIELDS, COMMAND_COLUMNS, strict=True)}
    )


def _certificate(row: sqlite3.Row) -> Certificate:
    return Certificate(
        certSN=row["serial"],
        orgId=row["org_id"],
        productKey=row["product_key"],
        deviceKey=row["device_key"],
        certPem=row["cert_pem"],
        notBefore=row["not_before"],
        notAfter=row["not_after"],
        revokedAt=row["revoked_at"],
        createdAt=row["created_at"],
    )


def _org(row: sqlite3.Row) -> Organization:
    return Organization(
        orgId=row["org_id"],
        name=row["name"],
        accessKey=row["access_key"],
        secretHash=row["secret_hash"],
        admin=bool(row["admin"]),
        createdAt=row["created_at"],
    )


class SqliteStore:
    """One aiosqlite connection; aiosqlite runs each call on its own thread, in order."""

    def __init__(self, path: Path | str) -> None:
        self._path = str(path)
        self._db: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("the store is not open")
        return self._db

    async def open(self) -> None:
        """Open and migrate the database; `StorageUnavailable` names the file if it cannot."""
        try:
            # Opened once in this thread first: when aiosqlite's own connect fails, its
            # worker thread outlives the call and reports to a loop that may be gone.
            sqlite3.connect(self._path).close()
            self._db = await aiosqlite.connect(self._path)
            self._db.row_factory = sqlite3.Row
            await self._db.execute("PRAGMA journal_mode=WAL")
            await self._db.execute("PRAGMA synchronous=NORMAL")
            await self._db.execute("PRAGMA foreign_keys=ON")
            await self._migrate()
        except sqlite3.Error as exc:
            # A connection left open keeps aiosqlite's (non-daemon) thread alive, and the
            # process would never exit.
            await self.close()
            raise StorageUnavailable(
                f"cannot open the registry {self._path}: {_reason(exc)}"
            ) from exc
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def _migrate(self) -> None:
        async with self.db.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        version = int(row[0]) if row else 0
        if version > len(MIGRATIONS):
            raise RuntimeError(
                f"the database is at schema {version}, newer than this gatehouse knows"
                f" ({len(MIGRATIONS)}); upgrade gatehouse"
            )
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            await self.db.executescript(
                f"BEGIN;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;"
            )

    async def schema_version(self) -> int:
        async with self.db.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def _one(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Row | None:
        async with self.db.execute(sql, args) as cursor:
            row: sqlite3.Row | None = await cursor.fetchone()
            return row

    async def _all(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        async with self.db.execute(sql, args) as cursor:
            return list(await cursor.fetchall())

    async def _write(self, sql: str, args: Sequence[Any] = ()) -> int:
        async with self.transaction() as db:
            cursor = await db.execute(sql, args)
        return cursor.rowcount

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """One writer at a time on the shared connection: a transaction's statements are
        never interleaved with (or committed by) another coroutine's."""
        async with self._write_lock:
            try:
                yield self.db
                await self.db.commit()
            except BaseException as exc:
                # A full disk can fail the rollback too; what matters is the first error.
                with contextlib.suppress(sqlite3.Error):
                    await self.db.rollback()
                if isinstance(exc, sqlite3.Error) and _unavailable(exc):
                    raise StorageUnavailable(f"cannot write {self._path}: {_reason(exc)}") from exc
                raise

    # ------------------------------------------------------------------ organizations

    async def insert_org(self, org: Organization) -> None:
        await self._write(
            "INSERT INTO organizations VALUES (?, ?, ?, ?, ?, ?)",
            (org.orgId, org.name, org.accessKey, org.secretHash, int(org.admin), org.createdAt),
        )

    async def get_org(self, org_id: str) -> Organization | None:
        row = await self._one("SELECT * FROM organizations WHERE org_id = ?", (org_id,))
        return _org(row) if row else None

    async def get_org_by_access_key(self, access_key: str) -> Organization | None:
        row = await self._one("SELECT * FROM organizations WHERE access_key = ?", (access_key,))
        return _org(row) if row else None

    async def admin_org(self) -> Organization | None:
        row = await self._one("SELECT * FROM organizations WHERE admin = 1 ORDER BY created_at")
        return _org(row) if row else None

    async def count_orgs(self) -> int:
        row = await self._one("SELECT COUNT(*) FROM organizations")
        return int(row[0]) if row else 0

    # ------------------------------------------------------------------ thing models

    async def insert_model(self, model: ThingModel) -> None:
        await self._write(
            "INSERT INTO thing_models VALUES (?, ?, ?, ?, ?, ?)",
            (model.orgId, model.modelId, model.name, model.desc, _json(model.tsl), model.createdAt),
        )

    async def replace_model(self, model: ThingModel) -> None:
        await self._write(
            "UPDATE thing_models SET name = ?, description = ?, tsl = ?"
            " WHERE org_id = ? AND model_id = ?",
            (model.name, model.desc, _json(model.tsl), model.orgId, model.modelId),
        )

    async def get_model(self, org_id: str, model_id: str) -> ThingModel | None:
        row = await self._one(
            "SELECT * FROM thing_models WHERE org_id = ? AND model_id = ?", (org_id, model_id)
        )
        return _model(row) if row else None

    async def list_models(self, org_id: str, offset: int, limit: int) -> list[ThingModel]:
        rows = await self._all(
            "SELECT * FROM thing_models WHERE org_id = ? ORDER BY model_id LIMIT ? OFFSET ?",
            (org_id, limit, offset),
        )
        return [_model(r) for r in rows]

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

    async def insert_product(self, product: Product) -> None:
        await self._write(
            "INSERT INTO products VALUES (?, ?, ?, ?, ?, ?, ?)",
            self._product_row(product),
        )

    async def replace_product(self, product: Product) -> None:
        await self._write(
            "UPDATE products SET name = ?, model_id = ?, settings = ? WHERE product_key = ?",
            (
                product.settings.productName.defaultValue,
                product.settings.modelId,
                product.settings.model_dump_json(),
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
        )

    async def get_product(self, product_key: str) -> Product | None:
        row = await self._one("SELECT * FROM products WHERE product_key = ?", (product_key,))
        return _product(row) if row else None

    async def product_named(self, org_id: str, name: str) -> str | None:
        row = await self._one(
            "SELECT product_key FROM products WHERE org_id = ? AND name = ?", (org_id, name)
        )
        return str(row[0]) if row else None

    async def list_products(self, org_id: str, offset: int, limit: int) -> list[Product]:
        rows = await self._all(
            "SELECT * FROM products WHERE org_id = ? ORDER BY rowid LIMIT ? OFFSET ?",
            (org_id, limit, offset),
        )
        return [_product(r) for r in rows]

    async def count_products(self, org_id: str) -> int:
        row = await self._one("SELECT COUNT(*) FROM products WHERE org_id = ?", (org_id,))
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
                _json(d.deviceAttributes),
                _json(d.deviceTags),
                int(d.enabled),
                int(d.online),
                d.activatedAt,
                d.lastSeenAt,
                d.createdAt,
            )
            for d in devices
        ]
        async with self.transaction() as db:
            await db.executemany(
                f"INSERT INTO devices ({DEVICE_COLUMNS}) VALUES ({', '.join('?' * 15)})",  # noqa: S608
                rows,
            )

    async def get_device(self, product_key: str, device_key: str) -> Device | None:
        row = await self._one(
            "SELECT * FROM devices WHERE product_key = ? AND device_key = ?",
            (product_key, device_key),
        )
        return _device(row) if row else None

    async def get_device_by_asset(self, asset_id: str) -> Device | None:
        row = await self._one("SELECT * FROM devices WHERE asset_id = ?", (asset_id,))
        return _device(row) if row else None

    async def list_devices(self, product_key: str, offset: int, limit: int) -> list[Device]:
        rows = await self._all(
            "SELECT * FROM devices WHERE product_key = ? ORDER BY rowid LIMIT ? OFFSET ?",
            (product_key, limit, offset),
        )
        return [_device(r) for r in rows]

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
                _json(device.deviceAttributes),
                _json(device.deviceTags),
                int(device.enabled),
                device.productKey,
                device.deviceKey,
            ),
        )

    async def delete_device(self, product_key: str, device_key: str, when: int) -> None:
        async with self.transaction() as db:
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
        return [_device(r) for r in await self._all("SELECT * FROM devices")]

    async def all_products(self) -> list[Product]:
        return [_product(r) for r in await self._all("SELECT * FROM products")]

    async def all_orgs(self) -> list[Organization]:
        return [_org(r) for r in await self._all("SELECT * FROM organizations")]

    # ------------------------------------------------------------------ written behind

    async def reset_presence(self) -> int:
        """Mark every device offline: nothing is connected to a broker that just started."""
        return await self._write("UPDATE devices SET online = 0 WHERE online = 1")

    async def write_behind(
        self,
        presence: Sequence[PresenceRow],
        log: Sequence[LogRow],
        latest: Sequence[LatestRow],
    ) -> None:
        """One transaction for a batch of the broker's writes."""
        async with self.transaction() as db:
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
        return [
            (
                r["product_key"],
                r["device_key"],
                r["ts"],
                r["kind"],
                r["topic"],
                r["payload"],
                r["code"],
                r["detail"],
            )
            for r in rows
        ]

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
        return [
            Binding(
                productKey=r["product_key"],
                deviceKey=r["device_key"],
                userId=r["user_id"],
                role=r["role"],
                sharedBy=r["shared_by"],
                createdAt=r["created_at"],
            )
            for r in rows
        ]

    async def replace_bindings(
        self, product_key: str, device_key: str, remove: Sequence[str], add: Binding | None
    ) -> None:
        """Remove some users' bindings and add one, in one transaction."""
        async with self.transaction() as db:
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
            " GROUP BY device_key HAVING COUNT(*) >= ?)",
            (product_key, at_least),
        )
        return int(row[0]) if row else 0

    # ------------------------------------------------------------------ commands

    async def insert_command(self, command: Command) -> None:
        values = command.model_dump()
        await self._write(
            f"INSERT INTO commands ({', '.join(COMMAND_COLUMNS)})"  # noqa: S608
            f" VALUES ({', '.join('?' * len(COMMAND_COLUMNS))})",
            [values[field] for field in COMMAND_FIELDS],
        )

    async def update_command(self, command: Command) -> None:
        """Write what changes as a command moves on: its state and what it got back."""
        await self._write(
            "UPDATE commands SET state = ?, sent_at = ?, reply_by = ?, finished_at = ?,"
            " reply_code = ?, output = ?, message = ?, mismatch = ? WHERE command_id = ?",
            (
                command.state,
                command.sentAt,
                command.replyBy,
                command.finishedAt,
                command.replyCode,
                command.output,
                command.message,
                command.mismatch,
                command.commandId,
            ),
        )

    async def get_command(self, command_id: str) -> Command | None:
        row = await self._one("SELECT * FROM commands WHERE command_id = ?", (command_id,))
        return _command(row) if row else None

    async def list_commands(self, product_key: str, device_key: str, limit: int) -> list[Command]:
        rows = await self._all(
            "SELECT * FROM commands WHERE product_key = ? AND device_key = ?"
            " ORDER BY created_at DESC, rowid DESC LIMIT ?",
            (product_key, device_key, limit),
        )
        return [_command(r) for r in rows]

    async def open_commands(self) -> list[Command]:
        """Every pending or sent command, oldest first (to rebuild the queues at start)."""
        rows = await self._all(
            "SELECT * FROM commands WHERE state IN ('pending', 'sent') ORDER BY created_at, rowid"
        )
        return [_command(r) for r in rows]

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
        return [_certificate(r) for r in rows]

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
            "INSERT OR REPLACE INTO topology VALUES (?, ?, ?, ?, ?)",
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
        return self._topology(row) if row else None

    async def list_sub_devices(self, gateway_pk: str, gateway_dk: str) -> list[Device]:
        rows = await self._all(
            "SELECT d.* FROM topology t JOIN devices d"
            " ON d.product_key = t.product_key AND d.device_key = t.device_key"
            " WHERE t.gateway_product_key = ? AND t.gateway_device_key = ? ORDER BY t.created_at",
            (gateway_pk, gateway_dk),
        )
        return [_device(r) for r in rows]

    async def all_topology(self) -> list[Topology]:
        return [self._topology(r) for r in await self._all("SELECT * FROM topology")]

    async def list_topology(self, gateway_pk: str, gateway_dk: str) -> list[Topology]:
        rows = await self._all(
            "SELECT * FROM topology WHERE gateway_product_key = ? AND gateway_device_key = ?"
            " ORDER BY created_at",
            (gateway_pk, gateway_dk),
        )
        return [self._topology(r) for r in rows]

    async def delete_topology(self, product_key: str, device_key: str) -> bool:
        return (
            await self._write(
                "DELETE FROM topology WHERE product_key = ? AND device_key = ?",
                (product_key, device_key),
            )
            > 0
        )

    @staticmethod
    def _topology(row: sqlite3.Row) -> Topology:
        return Topology(
            productKey=row["product_key"],
            deviceKey=row["device_key"],
            gatewayProductKey=row["gateway_product_key"],
            gatewayDeviceKey=row["gateway_device_key"],
            createdAt=row["created_at"],
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
        return _product_script(row) if row else None

    async def all_product_scripts(self) -> list[ProductScript]:
        return [_product_script(r) for r in await self._all("SELECT * FROM product_scripts")]

    async def delete_product_script(self, product_key: str) -> bool:
        deleted = await self._write(
            "DELETE FROM product_scripts WHERE product_key = ?", (product_key,)
        )
        return deleted > 0


def _product_script(row: sqlite3.Row) -> ProductScript:
    return ProductScript(
        productKey=row["product_key"],
        orgId=row["org_id"],
        scriptType=row["script_type"],
        scriptContent=row["content"],
        version=row["version"],
        updatedAt=row["updated_at"],
    )
