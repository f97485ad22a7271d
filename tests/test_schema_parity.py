"""Each migration is written twice, once per database (docs/decisions.md says why); this
is the guard that makes two copies safe: after every migration, SQLite's schema and
PostgreSQL's agree.

Compared: the tables; each table's columns by name, in order (the inserts that give
no column list depend on it); its primary key and unique keys by their columns; the
indexes by name and table. Not compared: types (INTEGER against BIGINT, BLOB against
BYTEA are the same values here) and the differences each store needs for itself,
which are listed below one by one, so a new one is a decision and not an accident.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from registry.sqlite import SqliteStore
from registry.store import rows
from registry.store.postgres import PostgresStore
from simulators.launch import Postgres

# PostgreSQL's `seq` identity columns keep insertion order where SQLite orders by rowid
# (sql.py's ORDER); device_log's seq is a real column on both and is not listed.
POSTGRES_ONLY_COLUMNS = {
    ("products", "seq"),
    ("devices", "seq"),
    ("commands", "seq"),
    ("activation_codes", "seq"),
    ("access_keys", "seq"),
}
# list_devices orders a product's devices by seq; SQLite's rowid order needs no index.
POSTGRES_ONLY_INDEXES = {("devices_in_order", "devices")}
# Where each records its migration number (SQLite: PRAGMA user_version), and SQLite's
# own bookkeeping for AUTOINCREMENT.
POSTGRES_ONLY_TABLES = {"schema_version"}
SQLITE_ONLY_TABLES = {"sqlite_sequence"}


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


def differences(lite: Schema, pg: Schema) -> list[str]:
    """What differs beyond the differences allowed, one line each; [] when in step."""
    found: list[str] = []
    lite_tables = set(lite.columns) - SQLITE_ONLY_TABLES
    pg_tables = set(pg.columns) - POSTGRES_ONLY_TABLES
    found += [f"table {t} only on SQLite" for t in sorted(lite_tables - pg_tables)]
    found += [f"table {t} only on PostgreSQL" for t in sorted(pg_tables - lite_tables)]
    for table in sorted(lite_tables & pg_tables):
        pg_columns = [c for c in pg.columns[table] if (table, c) not in POSTGRES_ONLY_COLUMNS]
        if lite.columns[table] != pg_columns:
            found.append(f"{table}: SQLite {lite.columns[table]}, PostgreSQL {pg_columns}")
    found += [f"key {k} only on SQLite" for k in sorted(lite.keys - pg.keys)]
    found += [f"key {k} only on PostgreSQL" for k in sorted(pg.keys - lite.keys)]
    pg_indexes = pg.indexes - POSTGRES_ONLY_INDEXES
    found += [f"index {i} only on SQLite" for i in sorted(lite.indexes - pg_indexes)]
    found += [f"index {i} only on PostgreSQL" for i in sorted(pg_indexes - lite.indexes)]
    return found


async def _migrated(tmp_path: Path, postgres: Postgres) -> tuple[SqliteStore, PostgresStore]:
    lite = SqliteStore(tmp_path / "registry.db")
    pg = PostgresStore(postgres.new_database())
    await lite.open()
    await pg.open()
    return lite, pg


async def test_after_every_migration_sqlite_and_postgresql_have_the_same_schema(
    tmp_path: Path, postgres: Postgres
) -> None:
    lite, pg = await _migrated(tmp_path, postgres)
    try:
        lite_schema, pg_schema = await sqlite_schema(lite), await postgres_schema(pg)
    finally:
        await lite.close()
        await pg.close()
    assert differences(lite_schema, pg_schema) == []
    # The comparison saw the schema, not two empty lists.
    assert {"devices", "commands", "device_log"} <= set(lite_schema.columns)
    assert ("products_by_model", "products") in lite_schema.indexes
    assert ("devices", "primary", ("product_key", "device_key")) in lite_schema.keys
    assert ("organizations", "unique", ("access_key",)) in pg_schema.keys


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
        found = differences(await sqlite_schema(lite), await postgres_schema(pg))
    finally:
        await lite.close()
        await pg.close()
    assert len(found) == 4, found
    assert found[0].startswith("webhooks: SQLite [") and "'paused'" in found[0]
    assert "key ('webhooks', 'unique', ('secret',)) only on PostgreSQL" in found
    assert "index ('webhooks_url', 'webhooks') only on SQLite" in found
    assert "index ('certificates_by_serial', 'certificates') only on PostgreSQL" in found


async def test_every_mapper_reads_columns_a_table_has_on_both_stores(
    tmp_path: Path, postgres: Postgres
) -> None:
    """The mappers read fields from columns by rule; a field whose column no table holds
    (a misnamed exception, a field added without its migration) is caught here."""
    mappers = [m for m in vars(rows).values() if isinstance(m, rows.RowMapper)]
    assert len(mappers) >= 15
    lite, pg = await _migrated(tmp_path, postgres)
    try:
        schemas = {"SQLite": await sqlite_schema(lite), "PostgreSQL": await postgres_schema(pg)}
    finally:
        await lite.close()
        await pg.close()
    computed = {"has_image"}  # not a column: PRODUCT_SELECT (sql.py) adds it
    for mapper in mappers:
        wanted = set(mapper.columns) - computed
        for name, schema in schemas.items():
            assert any(wanted <= set(columns) for columns in schema.columns.values()), (
                f"{mapper.model.__name__}: no {name} table has all of {sorted(wanted)}"
            )
