"""Presence's online count, driven through every path that changes who is online, on
a real registry and the collaborators `broker.gate` gives it (cache, write-behind,
sub-device sessions)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from broker.gate.credentials import CredentialCache, DeviceId
from broker.gate.identity import DeviceIdentity
from broker.gate.links import NoLinks
from broker.gate.presence import Presence
from broker.gate.subdevices import SubDeviceSessions
from broker.gate.writer import WriteBehind
from registry import Device, Registry, SqliteStore
from tests.conftest import THERMOSTAT_TSL


class BrokerLinks(NoLinks):
    """What the broker is asked to do; the test then plays the broker's disconnect hook
    for each connection it was asked to end."""

    def __init__(self) -> None:
        self.kicked: list[str] = []

    def kick(self, session_key: str) -> None:
        self.kicked.append(session_key)


@dataclass
class World:
    registry: Registry
    presence: Presence
    links: BrokerLinks
    devices: dict[str, Device] = field(default_factory=dict)

    def identity(self, name: str) -> DeviceIdentity:
        device = self.devices[name]
        return DeviceIdentity(device.productKey, device.deviceKey, device.orgId)

    def key(self, name: str) -> DeviceId:
        return self.identity(name).key

    def online_names(self) -> set[str]:
        return {name for name in self.devices if self.presence.is_online(self.key(name))}

    def drop_kicked(self) -> None:
        """The broker ends each kicked connection; its disconnect hook runs."""
        by_session = {self.identity(name).session_key: name for name in self.devices}
        for session_key in self.links.kicked:
            self.presence.disconnected(self.identity(by_session[session_key]))
        self.links.kicked.clear()

    def check(self, expected: Sequence[str]) -> None:
        """The count equals what is online, recomputed from scratch."""
        assert self.online_names() == set(expected)
        sessions = self.presence.sessions
        gateways = [self.key(name) for name in self.devices]
        recomputed = len(self.presence.direct) + sum(sessions.count(g) for g in gateways)
        assert self.presence.online == recomputed == len(expected)


async def make_devices(
    registry: Registry, org_id: str, product_key: str, names: Sequence[str]
) -> list[Device]:
    bodies = [{"productKey": product_key, "deviceName": n, "timezone": "+00:00"} for n in names]
    return await registry.create_devices(org_id, bodies)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    store = SqliteStore(tmp_path / "registry.db")
    await store.open()
    registry = Registry(store)
    org, _ = await registry.create_org("o")
    await registry.create_model(org.orgId, {"modelId": "m", "tsl": THERMOSTAT_TSL})
    direct = await registry.create_product(
        org.orgId, {"productName": "direct", "modelId": "m", "deviceType": "direct"}
    )
    gateway = await registry.create_product(
        org.orgId,
        {"productName": "gw", "modelId": "m", "deviceType": "gateway"},
    )
    # The access mode is the sub-device product's (issue 16).
    sub = await registry.create_product(
        org.orgId,
        {
            "productName": "sub",
            "modelId": "m",
            "deviceType": "subdevice",
            "gatewayAccessMode": "integration",
        },
    )
    # As broker.gate wires them: the cache follows the registry, presence follows the cache.
    cache = CredentialCache()
    await cache.load(store)
    registry.observers.append(cache)
    presence = Presence(cache, WriteBehind(store), SubDeviceSessions(limit=200))
    links = BrokerLinks()
    presence.links = links
    cache.on_revoked = presence.revoked
    made = World(registry, presence, links)
    for product, names in (
        (direct.productKey, ["d1", "d2", "d3"]),
        (gateway.productKey, ["g1", "g2"]),
        (sub.productKey, ["s1", "s2", "s3", "s4"]),
    ):
        created = await make_devices(registry, org.orgId, product, names)
        made.devices.update(zip(names, created, strict=True))
    for gateway_name, names in (("g1", ["s1", "s2", "d3"]), ("g2", ["s3", "s4"])):
        for name in names:
            await registry.attach(made.devices[gateway_name], made.devices[name])
    yield made
    await store.close()


async def test_the_online_count_follows_every_path(world: World) -> None:
    presence, devices = world.presence, world.devices
    world.check([])
    presence.connected(world.identity("d1"))
    presence.connected(world.identity("d2"))
    world.check(["d1", "d2"])
    # A gateway logs in the sub-devices of integration products when it connects; d3, a
    # directly connected product's device, has no access mode: it logs in itself (proxy).
    presence.connected(world.identity("g1"))
    world.check(["d1", "d2", "g1", "s1", "s2"])
    presence.sub_online(world.identity("g1"), world.key("d3"))
    world.check(["d1", "d2", "g1", "s1", "s2", "d3"])
    presence.connected(world.identity("g2"))
    world.check(["d1", "d2", "g1", "s1", "s2", "d3", "g2", "s3", "s4"])
    everyone = ["d1", "d2", "d3", "g1", "g2", "s1", "s2", "s3", "s4"]
    # A take-over: the broker ends the old connection, then the new one connects.
    presence.disconnected(world.identity("d1"))
    world.check([n for n in everyone if n != "d1"])
    presence.connected(world.identity("d1"))
    world.check(everyone)
    # A device in a gateway's topology connecting directly ends its gateway session ...
    presence.connected(world.identity("d3"))
    assert presence.sessions.through(*world.key("d3")) is None
    world.check(everyone)
    # ... and logging in through the gateway ends the direct connection.
    presence.sub_online(world.identity("g1"), world.key("d3"))
    world.drop_kicked()
    assert presence.sessions.through(*world.key("d3")) == world.key("g1")
    world.check(everyone)
    # Logging in through another gateway moves it.
    presence.sub_online(world.identity("g2"), world.key("s2"))
    world.check(everyone)
    assert presence.sub_offline(world.key("s2"), "logged out")
    assert not presence.sub_offline(world.key("s2"), "logged out")  # twice: nothing more
    world.check(["d1", "d2", "d3", "g1", "g2", "s1", "s3", "s4"])
    # Disabled and deleted: offline at once, before the broker ends the connection.
    await world.registry.set_enabled(devices["d2"], False)
    world.check(["d1", "d3", "g1", "g2", "s1", "s3", "s4"])
    world.drop_kicked()
    await world.registry.delete_device(devices["s3"])
    del devices["s3"]
    world.check(["d1", "d3", "g1", "g2", "s1", "s4"])
    # A gateway disabled with sub-devices logged in: it is offline at once, and so are
    # they (nothing can reach them through it any more).
    await world.registry.set_enabled(devices["g2"], False)
    world.check(["d1", "d3", "g1", "s1"])
    world.drop_kicked()
    world.check(["d1", "d3", "g1", "s1"])
    # A gateway's connection ends: its sub-devices go with it.
    presence.disconnected(world.identity("g1"))
    world.check(["d1"])
    presence.disconnected(world.identity("d1"))
    presence.disconnected(world.identity("d1"))  # a second hook for the same: nothing
    world.check([])


def test_reading_the_online_count_does_not_walk_the_devices() -> None:
    """It is read on every connect and disconnect: with 10,000 online it must not cost a
    walk over them (it did: 1 ms a read, seconds of blocked loop over a ramp)."""
    store = SqliteStore(Path("unused.db"))  # never opened: nothing here is flushed
    presence = Presence(CredentialCache(), WriteBehind(store), SubDeviceSessions())
    for i in range(10_000):
        presence.connected(DeviceIdentity("pk", f"d{i}", "org"))
    started = time.perf_counter()
    for _ in range(1_000):
        assert presence.online == 10_000
    # 1,000 reads: about a second when each walks 10,000 devices, well under 1 ms when not.
    assert time.perf_counter() - started < 0.05
