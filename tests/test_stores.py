"""The stores behind the registry: the same behaviour on SQLite and PostgreSQL (run on
each with --store both), schemas in step, a copy from one to the other, and what a
PostgreSQL server that goes away means to callers."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry import Conflict, Registry, StorageUnavailable
from registry.migrations import MIGRATIONS
from registry.sqlite import SqliteStore
from registry.store import Store
from registry.store.copy import copy_registry
from registry.store.postgres import PostgresStore
from registry.store.postgres_migrations import POSTGRES_MIGRATIONS
from registry.store.protocols import Duplicate
from registry.store.urls import BadDatabaseUrl, store_for
from simulators.launch import Postgres, free_port
from tests.conftest import THERMOSTAT_TSL

both = pytest.mark.both_stores


async def _filled(registry: Registry) -> tuple[str, list[str]]:
    """An organisation with a model, a product and devices; returns (org, device keys)."""
    org, _ = await registry.create_org("o")
    await registry.create_model(org.orgId, {"modelId": "m", "tsl": THERMOSTAT_TSL})
    product = await registry.create_product(org.orgId, {"productName": "p", "modelId": "m"})
    keys = [f"dev{n:02d}" for n in (5, 1, 9, 3, 7)]  # not sorted: the order is the batch's
    bodies = [
        {"productKey": product.productKey, "deviceKey": k, "deviceName": k, "timezone": "+00:00"}
        for k in keys
    ]
    await registry.create_devices(org.orgId, bodies)
    return org.orgId, keys


def test_the_migrations_are_in_step() -> None:
    assert len(POSTGRES_MIGRATIONS) == len(MIGRATIONS)


async def test_both_stores_have_the_same_tables_and_columns(
    tmp_path: Path, postgres: Postgres
) -> None:
    lite = SqliteStore(tmp_path / "r.db")
    pg = PostgresStore(postgres.new_database())
    await lite.open()
    await pg.open()
    try:
        assert await lite.tables() == await pg.tables()
        assert await lite.schema_version() == await pg.schema_version() == len(MIGRATIONS)
    finally:
        await lite.close()
        await pg.close()


@both
async def test_a_duplicate_is_the_same_error_on_each_store(store: Store) -> None:
    registry = Registry(store)
    org, _ = await registry.create_org("o", org_id="same", access_key="ak")
    with pytest.raises(Duplicate):
        await store.insert_org(org)
    with pytest.raises(Conflict, match="exists"):
        await registry.create_org("o2", org_id="same")
    org_id, keys = await _filled(registry)
    product = (await store.list_products(org_id, 0, 10))[0].productKey
    with pytest.raises(Conflict):
        await registry.create_devices(
            org_id,
            [
                {
                    "productKey": product,
                    "deviceKey": keys[0],
                    "deviceName": "x",
                    "timezone": "+00:00",
                }
            ],
        )


@both
async def test_lists_keep_the_order_things_were_made_in(store: Store) -> None:
    registry = Registry(store)
    org_id, keys = await _filled(registry)
    product = (await store.list_products(org_id, 0, 10))[0].productKey
    assert [d.deviceKey for d in await store.list_devices(product, 0, 10)] == keys
    assert [d.deviceKey for d in await store.list_devices(product, 1, 2)] == keys[1:3]
    assert await store.count_devices(product) == 5
    assert await store.existing_device_keys(product, [keys[2], "nope"]) == {keys[2]}


@both
async def test_written_behind_rows_read_back(store: Store) -> None:
    registry = Registry(store)
    org_id, keys = await _filled(registry)
    product = (await store.list_products(org_id, 0, 10))[0].productKey
    await store.write_behind(
        [(1, 1000, 1000, product, keys[0])],
        [
            (product, keys[0], 1000, "up", "t", b"\x00\xff", 200, ""),
            (product, keys[0], 1001, "online", "", None, None, ""),
        ],
        [(product, keys[0], "temp", "21.5", 1000)],
    )
    # A latest value older than the one stored does not replace it.
    await store.write_behind([], [], [(product, keys[0], "temp", "3", 999)])
    assert await store.latest_values(product, keys[0]) == [(product, keys[0], "temp", "21.5", 1000)]
    log = await store.device_log(product, keys[0], ["up", "online"], 10)
    assert [row[3] for row in log] == ["online", "up"]
    assert log[1][5] == b"\x00\xff"
    stats = await store.product_stats(product)
    assert (stats.total, stats.activated, stats.online) == (5, 1, 1)
    assert await store.reset_presence() == 1
    assert await store.prune_log(1) == 1


async def test_a_newer_schema_is_refused_on_postgresql(postgres: Postgres) -> None:
    url = postgres.new_database()
    first = PostgresStore(url)
    await first.open()
    await first._write("UPDATE schema_version SET version = 99")
    await first.close()
    with pytest.raises(StorageUnavailable, match="at schema 99, newer than this gatehouse"):
        await PostgresStore(url).open()


async def test_copy_sqlite_to_postgresql_and_back_keeps_everything(
    tmp_path: Path, postgres: Postgres
) -> None:
    lite = SqliteStore(tmp_path / "a.db")
    await lite.open()
    registry = Registry(lite)
    org_id, keys = await _filled(registry)
    product = (await lite.list_products(org_id, 0, 10))[0].productKey
    await lite.write_behind(
        [(1, 5, 5, product, keys[1])],
        [(product, keys[1], 5, "up", "t", b"payload", 200, "")] * 3,
        [(product, keys[1], "temp", "1.5", 5)],
    )
    pg = PostgresStore(postgres.new_database())
    back = SqliteStore(tmp_path / "b.db")
    await pg.open()
    await back.open()
    try:
        report = await copy_registry(lite, pg)
        assert report.rows["devices"] == 5 and report.rows["device_log"] == 3
        await copy_registry(pg, back)
        for table in await lite.tables():
            assert await lite.count_rows(table) == await back.count_rows(table), table
            columns = (await lite.tables())[table]
            original = [r async for batch in lite.read_table(table, columns, 100) for r in batch]
            middle = [r async for batch in pg.read_table(table, columns, 100) for r in batch]
            copied = [r async for batch in back.read_table(table, columns, 100) for r in batch]
            assert original == middle == copied, table
        assert [d.deviceKey for d in await pg.list_devices(product, 0, 10)] == keys
        # The copy's log goes on after the copied rows.
        await pg.write_behind([], [(product, keys[1], 6, "up", "t", None, 200, "")], [])
        assert len(await pg.device_log(product, keys[1], ["up"], 10)) == 4
        with pytest.raises(Conflict, match="not empty"):
            await copy_registry(lite, pg)
    finally:
        await lite.close()
        await pg.close()
        await back.close()


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("mysql://u@h/db", "use sqlite:///PATH or postgresql://"),
        ("sqlite://host/x.db", "with no host"),
        ("postgresql://u:secret@h:port/db", "port is not a number"),
        ("postgresql://u@h", "names a host and a database"),
    ],
)
def test_a_wrong_url_says_what_is_wrong(url: str, why: str) -> None:
    with pytest.raises(BadDatabaseUrl, match=why) as caught:
        store_for(url)
    assert "secret" not in str(caught.value)


async def test_an_unreachable_server_or_refused_login_is_one_reason(postgres: Postgres) -> None:
    nobody = PostgresStore(f"postgresql://gatehouse@127.0.0.1:{free_port()}/x", timeout=2)
    with pytest.raises(StorageUnavailable, match="cannot reach the server"):
        await nobody.open()
    stranger = PostgresStore(f"postgresql://stranger@127.0.0.1:{postgres.port}/postgres")
    with pytest.raises(StorageUnavailable, match="login refused"):
        await stranger.open()
    missing = PostgresStore(postgres.url("no_such_database"))
    with pytest.raises(StorageUnavailable, match="no such database"):
        await missing.open()


async def test_a_server_that_goes_away_is_unavailable_and_the_pool_reconnects(
    tmp_path: Path,
) -> None:
    server = Postgres(durable=False).start()
    try:
        store = PostgresStore(server.new_database(), timeout=2)
        await store.open()
        registry = Registry(store)
        await registry.create_org("before")
        server.stop("immediate")
        with pytest.raises(StorageUnavailable, match="cannot use postgresql://"):
            await registry.create_org("while down")
        with pytest.raises(StorageUnavailable):
            await store.count_orgs()
        server.start()
        # The first call after the restart may meet a connection the crash broke; the
        # pool replaces it, and the call after that succeeds.
        for _ in range(store_pool_size := 10):
            try:
                await registry.create_org("after")
                break
            except StorageUnavailable:
                continue
        else:
            pytest.fail(f"no call succeeded in {store_pool_size} after the server came back")
        assert sorted(o.name for o in await store.all_orgs()) == ["after", "before"]
        await store.close()
    finally:
        server.remove()
