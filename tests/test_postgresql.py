"""`gatehouse serve --database postgresql://...`: start-up that cannot reach its database
is one line and exit 2, and a PostgreSQL server that dies mid-load and comes back loses
nothing that was answered 200 and claims nothing it did not store."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from simulators.launch import Postgres
from tests.conftest import unique
from tests.devices import connect, eventually, new_device
from tests.server import Gatehouse, free_port
from tests.test_durability import Poster, _missing, _product, serve_once


def _serve_once(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> list[str]:
    """Start `gatehouse serve` expecting it to refuse; returns its stderr's lines."""
    done = serve_once(data_dir, *args, env=env)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines


def test_a_wrong_url_an_unreachable_server_and_a_refused_login_are_one_line_each(
    tmp_path: Path, postgres: Postgres
) -> None:
    (wrong,) = _serve_once(tmp_path / "a", "--database", "mysql://root:hunter2@db/registry")
    assert "database URL" in wrong and "postgresql://" in wrong and "hunter2" not in wrong
    port = free_port()
    (unreachable,) = _serve_once(
        tmp_path / "b", "--database", f"postgresql://gatehouse:pw@127.0.0.1:{port}/x"
    )
    assert "cannot reach the server" in unreachable and f"127.0.0.1:{port}" in unreachable
    assert ":pw@" not in unreachable
    # The environment names the database as well as the flag does.
    refused = f"postgresql://stranger@127.0.0.1:{postgres.port}/postgres"
    (login,) = _serve_once(tmp_path / "c", env={"GATEHOUSE_DATABASE": refused})
    assert "login refused" in login and "stranger" in login


def test_a_sqlite_url_puts_the_registry_where_it_says(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere" / "registry.sqlite"
    elsewhere.parent.mkdir()
    server = Gatehouse(tmp_path / "data", extra_args=("--database", f"sqlite://{elsewhere}"))
    server.start()
    try:
        product = _product(server.client())
    finally:
        server.stop()
    assert elsewhere.exists() and not (tmp_path / "data" / "registry.db").exists()
    with sqlite3.connect(elsewhere) as db:
        found = db.execute("SELECT COUNT(*) FROM products WHERE product_key = ?", (product,))
        assert found.fetchone() == (1,)


@pytest.fixture
def own_postgres() -> Iterator[Postgres]:
    """A server of the test's own, since the test kills it."""
    server = Postgres().start()
    yield server
    server.remove()


def test_killing_postgresql_mid_load_loses_nothing_answered_200(
    tmp_path: Path, own_postgres: Postgres
) -> None:
    url = own_postgres.new_database()
    server = Gatehouse(tmp_path / "data", extra_args=("--database", url)).start()
    try:
        api = server.client()
        product = _product(api)
        devices = [new_device(api, product) for _ in range(10)]
        before = [Poster(connect(server.mqtt_port, d), d) for d in devices]
        stop = threading.Event()
        threads = [threading.Thread(target=p.run, args=(stop,), daemon=True) for p in before]
        for thread in threads:
            thread.start()
        eventually(lambda: sum(len(p.acked) for p in before) >= 300, timeout=60)
        own_postgres.stop("immediate")  # a crash: no checkpoint, recovery at start
        stop.set()
        for thread in threads:
            thread.join(30)
        # Each poster ended with the post it had in flight: answered by what the batch
        # holding it did before the crash (200) or after it (an error, no PUBACK).
        down = [Poster(p.client, p.device) for p in before]
        threads = [threading.Thread(target=p.run, args=(stop, 3), daemon=True) for p in down]
        stop.clear()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        refused = [r for p in down for r in p.refused]
        assert refused, "posts while the database is down must be refused"
        assert {r["code"] for r in refused} == {500}
        assert not any(p.acked for p in down)
        # None of the refused posts was PUBACKed, before the crash or after it.
        for poster in (*before, *down):
            assert sum(info.is_published() for info in poster.infos) == len(poster.acked)
        created = api(
            "devices",
            "create",
            {"productKey": product, "deviceName": unique("d"), "timezone": "+08:00"},
        )
        assert created.status == 503, created
        assert "postgresql://" in created.msg
        assert api("broker", "stats").data["writer"]["failing"] is True

        own_postgres.start()  # the pool reconnects by itself
        after = [Poster(p.client, p.device) for p in before]

        def stored_again() -> bool:
            for poster in after:
                poster.run(threading.Event(), count=1)
            return all(p.acked for p in after)

        eventually(stored_again, timeout=60)
        assert api("broker", "stats").data["writer"]["failing"] is False
        new_device(api, product)  # the API writes again
        for poster in before:
            poster.client.close()
        acked = sum(len(p.acked) for p in before)
        assert _missing(api, [*before, *after]) == [], f"of {acked} acked before the crash"
    finally:
        server.stop()
        assert "Traceback" not in server.log(), server.log()


def _db_copy(src: str, dst: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "broker.cli", "db", "copy", src, dst]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_db_copy_moves_a_registry_from_sqlite_to_postgresql_and_it_serves(
    tmp_path: Path, postgres: Postgres
) -> None:
    first = Gatehouse(tmp_path / "laptop").start()
    try:
        api = first.client()
        product = _product(api)
        device = new_device(api, product)
        client = connect(first.mqtt_port, device)
        poster = Poster(client, device)
        poster.run(threading.Event(), count=3)
        client.close()
        assert len(poster.acked) == 3
    finally:
        first.stop()
    url = postgres.new_database()
    done = _db_copy(f"sqlite://{(tmp_path / 'laptop' / 'registry.db').resolve()}", url)
    assert done.returncode == 0, done.stderr
    assert "devices 1" in done.stdout and "device_log" in done.stdout
    again = Gatehouse(
        tmp_path / "team",
        org_id=first.org_id,
        access_key=first.access_key,
        access_secret=first.access_secret,
        extra_args=("--database", url),
    ).start()
    try:
        api = again.client()
        assert _missing(api, [poster]) == []
        client = connect(again.mqtt_port, device)  # its secret came along
        more = Poster(client, device)
        more.run(threading.Event(), count=1)
        client.close()
        assert len(more.acked) == 1
    finally:
        again.stop()
    # Into a registry that has rows: refused, in one line.
    refused = _db_copy(f"sqlite://{(tmp_path / 'laptop' / 'registry.db').resolve()}", url)
    assert refused.returncode == 2
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "is not empty" in lines[0], refused.stderr
