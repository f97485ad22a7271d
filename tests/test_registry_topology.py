"""Topology records on a real registry, on each store (the gateway issue builds its rules
on them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from registry import (
    Conflict,
    Device,
    Forbidden,
    InvalidArgument,
    Registry,
    SqliteStore,
    StorageUnavailable,
)
from registry.migrations import MIGRATIONS
from registry.store import Store
from tests.conftest import THERMOSTAT_TSL

pytestmark = pytest.mark.both_stores


@pytest.fixture
def registry(store: Store) -> Registry:
    return Registry(store)


async def make_device(
    registry: Registry, org: str, name: str, device_type: str, **settings: Any
) -> Device:
    product = await registry.create_product(
        org, {"productName": name, "modelId": "m", "deviceType": device_type, **settings}
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
    with pytest.raises(StorageUnavailable, match="newer than this gatehouse knows"):
        await SqliteStore(tmp_path / "future.db").open()


async def test_attach_reports_a_switch_and_honours_the_product_rules(registry: Registry) -> None:
    org, _ = await registry.create_org("o")
    await registry.create_model(org.orgId, {"modelId": "m", "tsl": THERMOSTAT_TSL})
    first = await make_device(registry, org.orgId, "gw1", "gateway")
    second = await make_device(registry, org.orgId, "gw2", "gateway")
    mover = await make_device(registry, org.orgId, "mover", "subdevice")
    attached = await registry.attach(first, mover)
    assert attached.moved_from is None
    again = await registry.attach(first, mover)  # where it is: nothing changes
    assert again.moved_from is None
    moved = await registry.attach(second, mover)
    assert moved.moved_from is not None
    assert moved.moved_from.gatewayDeviceKey == first.deviceKey

    fixed = await make_device(
        registry, org.orgId, "fixed", "subdevice", dynamicGatewaySwitching=False
    )
    await registry.attach(first, fixed)
    with pytest.raises(Conflict, match="dynamic gateway switching"):
        await registry.attach(second, fixed)

    only_first = {
        "enabled": True,
        "gatewayDevices": [{"productKey": first.productKey, "deviceKey": first.deviceKey}],
    }
    picky = await make_device(
        registry, org.orgId, "picky", "subdevice", specifiedGateway=only_first
    )
    with pytest.raises(Forbidden, match="specifies its gateways"):
        await registry.attach(second, picky)
    assert (await registry.attach(first, picky)).moved_from is None
