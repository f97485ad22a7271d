"""The embedded store: SQLite through aiosqlite, in WAL mode, with versioned migrations.

It only reads and writes records; every rule lives in `registry.registry`, and every
query shared with PostgreSQL in `registry.store.sql`. `PRAGMA user_version` records how
far a database is migrated.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from registry.errors import StorageUnavailable
from registry.migrations import MIGRATIONS
from registry.store.protocols import Duplicate, LatestRow, LogRow, PresenceRow
from registry.store.rows import Row
from registry.store.sql import SqlQueries, Tx

__all__ = ["LatestRow", "LogRow", "PresenceRow", "SqliteStore"]

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
# A second row with a key or a unique value that exists.
_DUPLICATE = {"SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"}
# Tables without a rowid, copied in key order instead.
_WITHOUT_ROWID = {"device_latest"}


def _unavailable(exc: sqlite3.Error) -> bool:
    name = getattr(exc, "sqlite_errorname", None) or ""
    return "_".join(name.split("_")[:2]) in _UNAVAILABLE  # SQLITE_IOERR_WRITE -> SQLITE_IOERR


def _reason(exc: sqlite3.Error) -> str:
    """What is wrong, in SQLite's words, with the disk's own where it has one."""
    return str(exc) or type(exc).__name__


class _SqliteTx:
    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        cursor = await self._db.execute(sql, args)
        return cursor.rowcount

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await self._db.executemany(sql, rows)


class SqliteStore(SqlQueries):
    """One aiosqlite connection; aiosqlite runs each call on its own thread, in order."""

    def __init__(self, path: Path | str) -> None:
        self._path = str(path)
        self._db: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()

    @property
    def location(self) -> str:
        return self._path

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
        version = await self.schema_version()
        if version > len(MIGRATIONS):
            raise StorageUnavailable(
                f"the registry {self._path} is at schema {version}, newer than this"
                f" gatehouse knows ({len(MIGRATIONS)}); upgrade gatehouse"
            )
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            await self.db.executescript(
                f"BEGIN;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;"
            )

    async def schema_version(self) -> int:
        async with self.db.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def _one(self, sql: str, args: Sequence[Any] = ()) -> Row | None:
        async with self.db.execute(sql, args) as cursor:
            row: sqlite3.Row | None = await cursor.fetchone()
            return row

    async def _all(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        async with self.db.execute(sql, args) as cursor:
            return list(await cursor.fetchall())

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
                if (
                    isinstance(exc, sqlite3.IntegrityError)
                    and getattr(exc, "sqlite_errorname", "") in _DUPLICATE
                ):
                    raise Duplicate(str(exc)) from exc
                raise

    @contextlib.asynccontextmanager
    async def _tx(self) -> AsyncIterator[Tx]:
        async with self.transaction() as db:
            yield _SqliteTx(db)

    # ------------------------------------------------------------------ db copy

    async def tables(self) -> dict[str, list[str]]:
        names = await self._all(
            "SELECT name FROM sqlite_master WHERE type = 'table'"
            " AND name NOT LIKE 'sqlite_%' ORDER BY name"
        )
        found: dict[str, list[str]] = {}
        for (name,) in names:
            columns = await self._all(f"PRAGMA table_info({name})")
            found[name] = [c["name"] for c in columns]
        return found

    async def read_table(
        self, table: str, columns: Sequence[str], batch: int
    ) -> AsyncIterator[list[tuple[Any, ...]]]:
        order = ", ".join(columns) if table in _WITHOUT_ROWID else "rowid"
        sql = f"SELECT {', '.join(columns)} FROM {table} ORDER BY {order}"  # noqa: S608
        async with self.db.execute(sql) as cursor:
            while rows := await cursor.fetchmany(batch):
                yield [tuple(r) for r in rows]

    async def after_copy(self) -> None:
        """Nothing: SQLite's rowids and AUTOINCREMENT follow the rows themselves."""
