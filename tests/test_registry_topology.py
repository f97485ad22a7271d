"""Topology records on a real SQLite registry (the gateway issue builds its rules on them)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from registry import Device, InvalidArgument, Registry, SqliteStore
from registry.migrations import MIGRATIONS
from tests.conftest import THERMOSTAT_TSL


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[Registry]:
    store = SqliteStore(tmp_path / "registry.db")
    await store.open()
    yield Registry(store)
    await store.close()


async def make_device(registry: Registry, org: str, name: str, device_type: str) -> Device:
    product = await registry.create_product(
        org, {"productName": name, "modelId": "m", "deviceType": device_type}
    )
    (device,) = await registry.create_devices(
        org, [{"productKey": product.productKey, "deviceName": name, "timezone": "+00:00"}]
    )
    return device


async def test_attach_detach_and_cascade(registry: Registry) -> None:
    org, _ = await registry.create_org("o")
    await registry.create_model(org.orgId, {"modelId": "m", "tsl": THERMOSTAT_TSL})
    gateway = await make_device(registry, org.orgId, "gw", "gateway")
    other_gateway = await make_device(registry, org.orgId, "gw2", "gateway")
    sub = await make_device(registry, org.orgId, "sub", "subdevice")
    direct = await make_device(registry, org.orgId, "direct", "direct")

    await registry.attach(gateway, sub)
    await registry.attach(gateway, direct)
    assert [t.deviceKey for t in await registry.sub_devices(gateway)] == [
        sub.deviceKey,
        direct.deviceKey,
    ]
    # A sub-device has one gateway: attaching elsewhere moves the record.
    await registry.attach(other_gateway, sub)
    found = await registry.gateway_of(sub)
    assert found is not None and found.gatewayDeviceKey == other_gateway.deviceKey
    assert [t.deviceKey for t in await registry.sub_devices(gateway)] == [direct.deviceKey]

    with pytest.raises(InvalidArgument, match="is not a gateway"):
        await registry.attach(direct, sub)
    with pytest.raises(InvalidArgument, match="a gateway cannot be a sub-device"):
        await registry.attach(gateway, other_gateway)

    assert await registry.detach(direct) is True
    assert await registry.detach(direct) is False
    # Deleting a gateway removes its topology records with it.
    await registry.delete_device(other_gateway)
    assert await registry.gateway_of(sub) is None


async def test_schema_version_is_recorded(registry: Registry) -> None:
    assert await registry.store.schema_version() == len(MIGRATIONS)


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "future.db")
    await store.open()
    await store.db.execute("PRAGMA user_version = 99")
    await store.db.commit()
    await store.close()
    with pytest.raises(RuntimeError, match="newer than this gatehouse knows"):
        await SqliteStore(tmp_path / "future.db").open()
