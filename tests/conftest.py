from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.server import Api, Gatehouse

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


@pytest.fixture(scope="session")
def gatehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gatehouse]:
    """One real gatehouse for the session; tests keep apart by unique names."""
    server = Gatehouse(tmp_path_factory.mktemp("gh") / "data").start()
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
        body = {"productName": unique("product"), "modelId": model_id, **settings}
        key: str = api("products", "create", body).data
        return key

    return make


@pytest.fixture
def new_gatehouse(tmp_path: Path) -> Iterator[Callable[..., Gatehouse]]:
    """Start gatehouses of a test's own (for restarts and start-up options)."""
    started: list[Gatehouse] = []

    def start(data_dir: Path | None = None, *args: str, **fields: Any) -> Gatehouse:
        server = Gatehouse(data_dir or tmp_path / "data", extra_args=args, **fields).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
