"""The shared store: PostgreSQL through asyncpg, with a pool that reconnects by itself.

The queries are `registry.store.sql`'s; this module numbers their placeholders, runs
them on pooled connections and says what a failure means in the store's terms: a
unique key that exists is `Duplicate`; a server that is gone, starting, shutting down,
out of disk or read-only is `StorageUnavailable` (503 from the API, an error reply to a
device), and the next call tries a fresh connection, so service resumes when the
server does. `schema_version` records how far a database is migrated; migrations run
under an advisory lock, so several gatehouse nodes can start on one database at once.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

import asyncpg

from registry.errors import StorageUnavailable
from registry.store.postgres_migrations import POSTGRES_MIGRATIONS
from registry.store.protocols import Duplicate
from registry.store.rows import Row
from registry.store.sql import SqlQueries, Tx
from registry.store.urls import without_password

# Failures that mean the server cannot be used now, not that a statement is wrong.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, unreachable
    TimeoutError,
    asyncpg.PostgresConnectionError,  # class 08, and a connection that died
    asyncpg.OperatorInterventionError,  # class 57: shutting down, starting up
    asyncpg.InsufficientResourcesError,  # class 53: disk full, out of memory
    asyncpg.ReadOnlySQLTransactionError,  # a standby, or default_transaction_read_only
    asyncpg.InterfaceError,  # the connection closed under the call
)
_MIGRATION_LOCK = 0x6761_7465  # "gate": one node migrates at a time
_PLACEHOLDER = re.compile(r"\?")
# The columns PostgreSQL adds to keep insertion order (SQLite's rowid); not copied.
_ORDER_COLUMN = "seq"
_SHARED_SEQ = {"device_log"}  # where seq is a real column on both stores


@functools.lru_cache(maxsize=512)
def numbered(sql: str) -> str:
    """`?` placeholders as PostgreSQL's `$1, $2, ...` (the queries have no literal `?`)."""
    counter = iter(range(1, 10_000))
    return _PLACEHOLDER.sub(lambda _: f"${next(counter)}", sql)


def _why(exc: BaseException) -> str:
    """The reason in one line: the server's own words, or the socket's."""
    if isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError):  # password, role
        return f"login refused: {exc}"
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return f"no such database: {exc}"
    if isinstance(exc, OSError):
        return f"cannot reach the server: {exc.strerror or exc}"
    if isinstance(exc, TimeoutError):
        return "the server did not answer in time"
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class _PgTx:
    def __init__(self, connection: asyncpg.Connection) -> None:
        self._connection = connection

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        status: str = await self._connection.execute(numbered(sql), *args)
        last = status.rsplit(" ", 1)[-1]
        return int(last) if last.isdigit() else 0

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await self._connection.executemany(numbered(sql), list(rows))


class PostgresStore(SqlQueries):
    """A pool of asyncpg connections to one database."""

    ORDER = _ORDER_COLUMN

    def __init__(self, url: str, *, pool_size: int = 10, timeout: float = 10.0) -> None:
        self._url = url
        self._pool: asyncpg.Pool | None = None
        self._pool_size = pool_size
        self._timeout = timeout  # seconds to connect, and for one statement

    @property
    def location(self) -> str:
        return without_password(self._url)

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("the store is not open")
        return self._pool

    async def open(self) -> None:
        """Connect and migrate; `StorageUnavailable` says in one line why it cannot."""
        try:
            self._pool = await asyncpg.create_pool(
                self._url,
                # No floor to keep: asyncpg would reconnect to keep it in the background
                # while the server is down (logging each failure); connections are made
                # when calls need them, and idle ones close after a while.
                min_size=0,
                max_size=self._pool_size,
                timeout=self._timeout,
                command_timeout=self._timeout * 3,
            )
            await self._migrate()
        except StorageUnavailable:
            await self.close()
            raise
        except (*_UNAVAILABLE, asyncpg.PostgresError, ValueError) as exc:
            await self.close()
            raise StorageUnavailable(
                f"cannot open the registry {self.location}: {_why(exc)}"
            ) from exc

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            with contextlib.suppress(Exception):
                await pool.close()

    async def _migrate(self) -> None:
        async with self.pool.acquire() as connection, connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            await connection.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"
            )
            version = await connection.fetchval("SELECT MAX(version) FROM schema_version") or 0
            if version > len(POSTGRES_MIGRATIONS):
                raise StorageUnavailable(
                    f"the registry {self.location} is at schema {version}, newer than this"
                    f" gatehouse knows ({len(POSTGRES_MIGRATIONS)}); upgrade gatehouse"
                )
            for number, script in enumerate(POSTGRES_MIGRATIONS[version:], start=version + 1):
                await connection.execute(script)
                await connection.execute("DELETE FROM schema_version")
                await connection.execute("INSERT INTO schema_version VALUES ($1)", number)

    async def schema_version(self) -> int:
        async with self._errors():
            version = await self.pool.fetchval("SELECT MAX(version) FROM schema_version")
        return int(version or 0)

    @contextlib.asynccontextmanager
    async def _errors(self) -> AsyncIterator[None]:
        try:
            yield
        except asyncpg.UniqueViolationError as exc:
            raise Duplicate(str(exc)) from exc
        except _UNAVAILABLE as exc:
            raise StorageUnavailable(f"cannot use {self.location}: {_why(exc)}") from exc

    async def _one(self, sql: str, args: Sequence[Any] = ()) -> Row | None:
        async with self._errors():
            row: Row | None = await self.pool.fetchrow(numbered(sql), *args)
            return row

    async def _all(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        async with self._errors():
            rows: list[Row] = await self.pool.fetch(numbered(sql), *args)
            return rows

    @contextlib.asynccontextmanager
    async def _tx(self) -> AsyncIterator[Tx]:
        async with (
            self._errors(),
            self.pool.acquire() as connection,
            connection.transaction(),
        ):
            yield _PgTx(connection)

    # ------------------------------------------------------------------ db copy

    async def tables(self) -> dict[str, list[str]]:
        rows = await self._all(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name <> 'schema_version'"
            " ORDER BY table_name, ordinal_position"
        )
        found: dict[str, list[str]] = {}
        for table, column in rows:
            if column == _ORDER_COLUMN and table not in _SHARED_SEQ:
                found.setdefault(table, [])
                continue
            found.setdefault(table, []).append(column)
        return found

    async def read_table(
        self, table: str, columns: Sequence[str], batch: int
    ) -> AsyncIterator[list[tuple[Any, ...]]]:
        order = _ORDER_COLUMN if await self._has_seq(table) else "1"
        sql = f"SELECT {', '.join(columns)} FROM {table} ORDER BY {order}"  # noqa: S608
        async with self._errors(), self.pool.acquire() as connection, connection.transaction():
            cursor = await connection.cursor(sql)
            while rows := await cursor.fetch(batch):
                yield [tuple(r) for r in rows]

    async def _has_seq(self, table: str) -> bool:
        row = await self._one(
            "SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema()"
            " AND table_name = ? AND column_name = ?",
            (table, _ORDER_COLUMN),
        )
        return row is not None

    async def after_copy(self) -> None:
        """Identity columns given explicit values (device_log's seq) continue after them."""
        identities = await self._all(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND is_identity = 'YES'"
        )
        async with self._tx() as tx:
            for table, column in identities:
                await tx.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'),"  # noqa: S608
                    f" COALESCE((SELECT MAX({column}) FROM {table}), 0) + 1, false)"
                )
