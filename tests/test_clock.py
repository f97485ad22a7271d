"""One clock, injectable (broker/clock.py): the parts stamp what they write with the
clock they are given, so a test moves time instead of sleeping. A real registry on
SQLite and the real write-behind; only the clock is the test's."""

from __future__ import annotations

from pathlib import Path

from broker.clock import SYSTEM_CLOCK, ManualClock
from broker.gate.connect_guard import ConnectGuard, ConnectLimit
from broker.gate.credentials import CredentialCache
from broker.gate.identity import DeviceIdentity
from broker.gate.presence import Presence
from broker.gate.subdevices import SubDeviceSessions
from broker.gate.writer import WriteBehind
from registry import Registry, SqliteStore
from tests.conftest import THERMOSTAT_TSL


async def test_presence_is_stamped_by_the_clock_it_is_given(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "registry.db")
    await store.open()
    try:
        registry = Registry(store)
        org, _ = await registry.create_org("o")
        await registry.create_model(org.orgId, {"modelId": "m", "tsl": THERMOSTAT_TSL})
        product = await registry.create_product(org.orgId, {"productName": "p", "modelId": "m"})
        [device] = await registry.create_devices(
            org.orgId, [{"productKey": product.productKey, "deviceName": "d", "timezone": "+00:00"}]
        )
        cache = CredentialCache()
        await cache.load(store)
        clock = ManualClock(wall_ms=1_600_000_000_000)
        writer = WriteBehind(registry.telemetry, clock=clock)
        presence = Presence(cache, writer, SubDeviceSessions(), clock=clock)
        writer.start()
        identity = DeviceIdentity(device.productKey, device.deviceKey, org.orgId)
        presence.connected(identity)
        clock.advance(90)  # a minute and a half online, without waiting for it
        presence.disconnected(identity)
        await writer.sync()
        log = await registry.device_log(device, ["online", "offline"])
        assert [(e["kind"], e["time"]) for e in log] == [
            ("offline", 1_600_000_090_000),
            ("online", 1_600_000_000_000),
        ]
        await writer.stop()
    finally:
        await store.close()


def test_the_connect_guard_carries_the_clock_the_api_reads_blocks_by() -> None:
    clock = ManualClock(monotonic=50.0)
    guard = ConnectGuard(ConnectLimit(burst=1, window=60, block=300), clock=clock)
    key = ("pk", "dk")
    guard.connects.allow(key, clock.monotonic())
    guard.connects.allow(key, clock.monotonic() + 1)  # the second in the window blocks
    clock.advance(100)
    [block] = guard.blocks(key, guard.clock.monotonic())
    assert block.seconds_left == 201
    assert ConnectGuard().clock is SYSTEM_CLOCK


def test_the_manual_clock_moves_only_when_told() -> None:
    clock = ManualClock(wall_ms=1000, monotonic=2.0)
    assert (clock.wall_ms(), clock.monotonic()) == (1000, 2.0)
    clock.advance(1.5)
    assert (clock.wall_ms(), clock.monotonic()) == (2500, 3.5)
    assert abs(SYSTEM_CLOCK.wall_ms() - SYSTEM_CLOCK.wall_ms()) < 1000
