"""Each migration is written twice, once per database (docs/decisions.md says why); this
is the guard that makes two copies safe: after every migration, SQLite's schema and
PostgreSQL's agree. Each store's own runner is driven one migration at a time on the
same two databases, as an upgrade runs them, and the schemas compared after each step.

Compared: the tables; each table's columns by name, in order (the inserts that give
no column list depend on it); its primary key and unique keys by their columns; the
indexes by name and table. Not compared: types (INTEGER against BIGINT, BLOB against
BYTEA are the same values here) and the differences each store needs for itself,
which are listed below one by one, so a new one is a decision and not an accident.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

import registry.sqlite
import registry.store.postgres
from registry.migrations import MIGRATIONS
from registry.sqlite import SqliteStore
from registry.store import rows
from registry.store.postgres import PostgresStore
from registry.store.postgres_migrations import POSTGRES_MIGRATIONS
from simulators.launch import Postgres

# Each allowed difference, with the migration that makes it: before that step it is
# not allowed (nor there), from it on it must be there.
# PostgreSQL's `seq` identity columns keep insertion order where SQLite orders by rowid
# (sql.py's ORDER); device_log's seq is a real column on both and is not listed.
POSTGRES_ONLY_COLUMNS = {
    ("products", "seq"): 1,
    ("devices", "seq"): 1,
    ("commands", "seq"): 3,
    ("activation_codes", "seq"): 8,
    ("access_keys", "seq"): 8,
}
# list_devices orders a product's devices by seq; SQLite's rowid order needs no index.
POSTGRES_ONLY_INDEXES = {("devices_in_order", "devices"): 1}
# Where each records its migration number (SQLite: PRAGMA user_version), and SQLite's
# own bookkeeping for AUTOINCREMENT.
POSTGRES_ONLY_TABLES = {"schema_version"}
SQLITE_ONLY_TABLES = {"sqlite_sequence"}
# The table each row mapper (registry.store.rows) reads.
MAPPER_TABLES = {
    "org": "organizations",
    "model": "thing_models",
    "product": "products",
    "device": "devices",
    "binding": "bindings",
    "topology": "topology",
    "command": "commands",
    "certificate": "certificates",
    "product_script": "product_scripts",
    "subscription": "subscriptions",
    "webhook": "webhooks",
    "project": "projects",
    "product_image": "product_images",
    "activation_code": "activation_codes",
    "access_key": "access_keys",
}


@dataclass
class Schema:
    columns: dict[str, list[str]]  # table -> its columns, in order
    keys: set[tuple[str, str, tuple[str, ...]]]  # (table, "primary" | "unique", columns)
    indexes: set[tuple[str, str]]  # (index, table), the ones a migration creates


async def sqlite_schema(store: SqliteStore) -> Schema:
    db = store.db
    async with db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
    ) as cursor:
        tables = [r[0] for r in await cursor.fetchall()]
    schema = Schema({}, set(), set())
    for table in tables:
        async with db.execute(f"PRAGMA table_info({table})") as cursor:
            info = list(await cursor.fetchall())
        schema.columns[table] = [c["name"] for c in info]
        primary = tuple(c["name"] for c in sorted(info, key=lambda c: c["pk"]) if c["pk"])
        if primary:
            schema.keys.add((table, "primary", primary))
        async with db.execute(f"PRAGMA index_list({table})") as cursor:
            indexes = list(await cursor.fetchall())
        for index in indexes:
            if index["origin"] == "u":
                async with db.execute(f"PRAGMA index_info({index['name']})") as cursor:
                    parts = sorted(await cursor.fetchall(), key=lambda p: p["seqno"])
                schema.keys.add((table, "unique", tuple(p["name"] for p in parts)))
            elif index["origin"] == "c":  # CREATE INDEX, not a key's own
                schema.indexes.add((index["name"], table))
    return schema


async def postgres_schema(store: PostgresStore) -> Schema:
    async with store.pool.acquire() as connection:
        columns = await connection.fetch(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"
        )
        keys = await connection.fetch(
            "SELECT t.relname AS table, c.contype::text AS kind,"
            " array_agg(a.attname ORDER BY k.n) AS columns"
            " FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid"
            " JOIN pg_namespace s ON s.oid = t.relnamespace"
            " CROSS JOIN unnest(c.conkey) WITH ORDINALITY AS k(attnum, n)"
            " JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum"
            " WHERE s.nspname = current_schema() AND c.contype IN ('p', 'u')"
            " GROUP BY t.relname, c.conname, c.contype"
        )
        indexes = await connection.fetch(
            "SELECT i.relname AS index, t.relname AS table FROM pg_index x"
            " JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid"
            " JOIN pg_namespace s ON s.oid = t.relnamespace"
            " WHERE s.nspname = current_schema()"
            " AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)"
        )
    schema = Schema({}, set(), set())
    for row in columns:
        schema.columns.setdefault(row["table_name"], []).append(row["column_name"])
    kinds = {"p": "primary", "u": "unique"}
    schema.keys = {(r["table"], kinds[r["kind"]], tuple(r["columns"])) for r in keys}
    schema.indexes = {(r["index"], r["table"]) for r in indexes}
    return schema


def allowed_at(step: int, allowed: dict[tuple[str, str], int]) -> set[tuple[str, str]]:
    return {name for name, since in allowed.items() if since <= step}


def differences(lite: Schema, pg: Schema, step: int) -> list[str]:
    """What differs after migration `step` beyond the differences allowed by then, and
    what is allowed by then but missing, one line each; [] when in step."""
    found: list[str] = []
    lite_tables = set(lite.columns) - SQLITE_ONLY_TABLES
    pg_tables = set(pg.columns) - POSTGRES_ONLY_TABLES
    found += [f"table {t} only on SQLite" for t in sorted(lite_tables - pg_tables)]
    found += [f"table {t} only on PostgreSQL" for t in sorted(pg_tables - lite_tables)]
    pg_only_columns = allowed_at(step, POSTGRES_ONLY_COLUMNS)
    for table in sorted(lite_tables & pg_tables):
        pg_columns = [c for c in pg.columns[table] if (table, c) not in pg_only_columns]
        if lite.columns[table] != pg_columns:
            found.append(f"{table}: SQLite {lite.columns[table]}, PostgreSQL {pg_columns}")
    pg_has = {(t, c) for t, columns in pg.columns.items() for c in columns}
    found += [f"column {c} allowed, not on PostgreSQL" for c in sorted(pg_only_columns - pg_has)]
    found += [f"key {k} only on SQLite" for k in sorted(lite.keys - pg.keys)]
    found += [f"key {k} only on PostgreSQL" for k in sorted(pg.keys - lite.keys)]
    pg_only_indexes = allowed_at(step, POSTGRES_ONLY_INDEXES)
    pg_indexes = pg.indexes - pg_only_indexes
    found += [f"index {i} only on SQLite" for i in sorted(lite.indexes - pg_indexes)]
    found += [f"index {i} only on PostgreSQL" for i in sorted(pg_indexes - lite.indexes)]
    missing = pg_only_indexes - pg.indexes
    found += [f"index {i} allowed, not on PostgreSQL" for i in sorted(missing)]
    return found


async def schemas_by_step(
    tmp_path: Path,
    postgres: Postgres,
    monkeypatch: pytest.MonkeyPatch,
    pg_migrations: tuple[str, ...] = POSTGRES_MIGRATIONS,
) -> dict[int, tuple[Schema, Schema]]:
    """SQLite's and PostgreSQL's schemas after each migration: both stores' own runners,
    given one migration more each time, upgrade the same two databases."""
    assert len(pg_migrations) == len(MIGRATIONS)
    path, url = tmp_path / "registry.db", postgres.new_database()
    schemas: dict[int, tuple[Schema, Schema]] = {}
    for step in range(1, len(MIGRATIONS) + 1):
        monkeypatch.setattr(registry.sqlite, "MIGRATIONS", MIGRATIONS[:step])
        monkeypatch.setattr(registry.store.postgres, "POSTGRES_MIGRATIONS", pg_migrations[:step])
        lite, pg = SqliteStore(path), PostgresStore(url)
        await lite.open()
        try:
            await pg.open()
            assert await lite.schema_version() == step == await pg.schema_version()
            schemas[step] = await sqlite_schema(lite), await postgres_schema(pg)
        finally:
            await lite.close()
            await pg.close()
    return schemas


def differences_by_step(schemas: dict[int, tuple[Schema, Schema]]) -> dict[int, list[str]]:
    """Each step whose schemas differ, and how."""
    found = {step: differences(lite, pg, step) for step, (lite, pg) in schemas.items()}
    return {step: lines for step, lines in found.items() if lines}


async def _migrated(tmp_path: Path, postgres: Postgres) -> tuple[SqliteStore, PostgresStore]:
    lite = SqliteStore(tmp_path / "registry.db")
    pg = PostgresStore(postgres.new_database())
    await lite.open()
    await pg.open()
    return lite, pg


async def test_after_every_migration_sqlite_and_postgresql_have_the_same_schema(
    tmp_path: Path, postgres: Postgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    schemas = await schemas_by_step(tmp_path, postgres, monkeypatch)
    assert differences_by_step(schemas) == {}
    # The comparison saw each step's schema, not the last one each time nor empty lists.
    assert list(schemas) == list(range(1, len(MIGRATIONS) + 1))
    assert "devices" in schemas[1][1].columns and "device_log" not in schemas[1][1].columns
    lite_schema, pg_schema = schemas[len(MIGRATIONS)]
    assert {"devices", "commands", "device_log"} <= set(lite_schema.columns)
    assert ("products_by_model", "products") in lite_schema.indexes
    assert ("devices", "primary", ("product_key", "device_key")) in lite_schema.keys
    assert ("organizations", "unique", ("access_key",)) in pg_schema.keys


async def test_a_twin_a_step_late_is_named_at_that_step(
    tmp_path: Path, postgres: Postgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Migration 4's certificate index and 1's devices_in_order (an allowed difference)
    moved one step later on PostgreSQL: the same schemas once all are applied, so only a
    comparison after each step sees them."""
    late = list(POSTGRES_MIGRATIONS)
    for step, index in [
        (1, "CREATE INDEX devices_in_order ON devices(product_key, seq);"),
        (4, "CREATE INDEX certificates_by_device ON certificates(product_key, device_key);"),
    ]:
        assert index in late[step - 1]
        late[step - 1] = late[step - 1].replace(index, "")
        late[step] += index
    found = differences_by_step(await schemas_by_step(tmp_path, postgres, monkeypatch, tuple(late)))
    assert found == {
        1: ["index ('devices_in_order', 'devices') allowed, not on PostgreSQL"],
        4: ["index ('certificates_by_device', 'certificates') only on SQLite"],
    }


async def test_a_migration_that_drifts_on_one_store_is_named(
    tmp_path: Path, postgres: Postgres
) -> None:
    """The guard fails when a twin is not a twin: a column, a key and indexes added on
    one store only are each reported."""
    lite, pg = await _migrated(tmp_path, postgres)
    try:
        await lite.db.executescript(
            "ALTER TABLE webhooks ADD COLUMN paused INTEGER NOT NULL DEFAULT 0;"
            "CREATE UNIQUE INDEX webhooks_url ON webhooks(url);"
        )
        await pg._write("CREATE INDEX certificates_by_serial ON certificates(serial)")
        await pg._write("ALTER TABLE webhooks ADD CONSTRAINT webhooks_secret UNIQUE (secret)")
        found = differences(await sqlite_schema(lite), await postgres_schema(pg), len(MIGRATIONS))
    finally:
        await lite.close()
        await pg.close()
    assert len(found) == 4, found
    assert found[0].startswith("webhooks: SQLite [") and "'paused'" in found[0]
    assert "key ('webhooks', 'unique', ('secret',)) only on PostgreSQL" in found
    assert "index ('webhooks_url', 'webhooks') only on SQLite" in found
    assert "index ('certificates_by_serial', 'certificates') only on PostgreSQL" in found


async def test_every_mapper_reads_columns_its_table_has_on_both_stores(
    tmp_path: Path, postgres: Postgres
) -> None:
    """The mappers read fields from columns by rule; a field whose column its table does
    not hold (a misnamed exception, a field added without its migration, a column that
    only another table has) is caught here."""
    mappers = {n: m for n, m in vars(rows).items() if isinstance(m, rows.RowMapper)}
    assert set(mappers) == set(MAPPER_TABLES)  # a new mapper names its table above
    lite, pg = await _migrated(tmp_path, postgres)
    try:
        schemas = {"SQLite": await sqlite_schema(lite), "PostgreSQL": await postgres_schema(pg)}
    finally:
        await lite.close()
        await pg.close()
    computed = {"has_image"}  # not a column: PRODUCT_SELECT (sql.py) adds it
    for name, mapper in mappers.items():
        table = MAPPER_TABLES[name]
        wanted = set(mapper.columns) - computed
        for store, schema in schemas.items():
            missing = sorted(wanted - set(schema.columns.get(table, [])))
            assert not missing, f"{mapper.model.__name__}: {store}'s {table} has no {missing}"
