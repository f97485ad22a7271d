"""Fixtures shared by the suite, and the stores it runs on.

`--store sqlite|postgresql|both` (default both; also GATEHOUSE_TEST_STORE) picks the
registry's store. With `both`, the tests that exist to check storage (marked
`both_stores`: the registry's unit tests and the integration tests whose subject is
what is stored) run on SQLite and on PostgreSQL, and every other test on SQLite; with
one store named, the whole suite runs on it. PostgreSQL is a throwaway cluster of the
session's own (simulators.launch.Postgres), started only when a test asks for it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from registry.store import Store
from registry.store.urls import store_for
from simulators.launch import Postgres
from simulators.platform import with_mandatory
from tests.server import Api, Gatehouse

STORES = ("sqlite", "postgresql")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--store",
        choices=(*STORES, "both"),
        default=os.environ.get("GATEHOUSE_TEST_STORE", "both"),
        help="the registry store the tests run on (both: storage tests on each)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "both_stores: a test of what is stored; runs on each store with --store both"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "store_kind" not in metafunc.fixturenames:
        return
    chosen = metafunc.config.getoption("store")
    if chosen == "both":
        kinds = (
            list(STORES) if metafunc.definition.get_closest_marker("both_stores") else ["sqlite"]
        )
    else:
        kinds = [chosen]
    # Session scope: one shared gatehouse per store, and tests grouped by store.
    metafunc.parametrize("store_kind", kinds, indirect=True, scope="session")


@pytest.fixture(scope="session")
def store_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A PostgreSQL server for the session, in a temporary directory; removed at the end.

    fsync is off: no test crashes the machine, and a killed server loses nothing the OS
    was handed."""
    try:
        server = Postgres(durable=False).start()
    except RuntimeError as exc:
        pytest.fail(f"{exc} (scripts/test.sh installs it)")
    yield server
    server.remove()


def database_url(request: pytest.FixtureRequest, kind: str, data_dir: Path) -> str:
    """A new, empty database of the kind: a file in `data_dir`, or a PostgreSQL database."""
    if kind == "sqlite":
        return f"sqlite://{data_dir.resolve() / 'registry.db'}"
    server: Postgres = request.getfixturevalue("postgres")
    return server.new_database()


@pytest.fixture
async def store(
    request: pytest.FixtureRequest, store_kind: str, tmp_path: Path
) -> AsyncIterator[Store]:
    """An open, migrated, empty store of the kind under test."""
    opened = store_for(database_url(request, store_kind, tmp_path))
    await opened.open()
    yield opened
    await opened.close()


THERMOSTAT_TSL: dict[str, Any] = {
    "properties": [
        {
            "identifier": "temp",
            "name": "Temperature",
            "accessMode": "r",
            "dataType": {"type": "float", "specs": {"min": "-40", "max": "120", "unit": "C"}},
        },
        {
            "identifier": "target",
            "accessMode": "rw",
            "dataType": {"type": "int", "specs": {"min": "5", "max": "30", "step": "1"}},
        },
        {
            "identifier": "mode",
            "dataType": {"type": "enum", "specs": {"0": "off", "1": "heat", "2": "cool"}},
        },
    ],
    "events": [
        {
            "identifier": "overheat",
            "type": "alert",
            "outputData": [{"identifier": "temp", "dataType": {"type": "double", "specs": {}}}],
        }
    ],
    "services": [
        {
            "identifier": "reboot",
            "inputData": [{"identifier": "delay", "dataType": {"type": "int", "specs": {}}}],
            "outputData": [{"identifier": "ok", "dataType": {"type": "bool", "specs": {}}}],
        }
    ],
}


def unique(prefix: str = "x") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def store_args(request: pytest.FixtureRequest, kind: str, data_dir: Path) -> tuple[str, ...]:
    """`gatehouse serve`'s arguments for a new database of the kind (none for SQLite,
    whose database is the data directory's own)."""
    if kind == "sqlite":
        return ()
    return ("--database", database_url(request, kind, data_dir))


@pytest.fixture(scope="session")
def gatehouse(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, store_kind: str
) -> Iterator[Gatehouse]:
    """One real gatehouse for the session (per store); tests keep apart by unique names."""
    data_dir = tmp_path_factory.mktemp("gh") / "data"
    server = Gatehouse(data_dir, extra_args=store_args(request, store_kind, data_dir)).start()
    yield server
    server.stop()


@pytest.fixture
def api(gatehouse: Gatehouse) -> Api:
    return gatehouse.client()


@pytest.fixture
def model_id(api: Api) -> str:
    model = unique("model")
    api("thing-models", "create", {"modelId": model, "tsl": THERMOSTAT_TSL}).ok()
    return model


@pytest.fixture
def make_product(api: Api, model_id: str) -> Callable[..., str]:
    def make(**settings: Any) -> str:
        body = with_mandatory({"productName": unique("product"), "modelId": model_id, **settings})
        key: str = api("products", "create", body).data
        return key

    return make


@pytest.fixture
def new_gatehouse(
    request: pytest.FixtureRequest, tmp_path: Path, store_kind: str
) -> Iterator[Callable[..., Gatehouse]]:
    """Start gatehouses of a test's own (for restarts and start-up options). Each data
    directory has a database of the store under test; the same directory again (a
    restart) gets the same database."""
    started: list[Gatehouse] = []
    databases: dict[Path, tuple[str, ...]] = {}

    def start(data_dir: Path | None = None, *args: str, **fields: Any) -> Gatehouse:
        data_dir = data_dir or tmp_path / "data"
        if "--database" not in args:
            if data_dir not in databases:
                databases[data_dir] = store_args(request, store_kind, data_dir)
            args = (*databases[data_dir], *args)
        server = Gatehouse(data_dir, extra_args=args, **fields).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
