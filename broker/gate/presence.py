"""Who is online, directly or through a gateway, and what that changes: presence and
events written behind, server-side subscriptions on the gateway's connection, and the
notices a gateway gets about its sub-devices (docs/protocol.md, sections 5 and 6)."""

from __future__ import annotations

import itertools
from collections.abc import Callable

from broker.clock import SYSTEM_CLOCK, Clock
from broker.gate.credentials import CredentialCache, DeviceId
from broker.gate.identity import DeviceIdentity, device_session_key
from broker.gate.links import Links, NoLinks
from broker.gate.subdevices import SubDeviceSessions
from broker.gate.writer import WriteBehind
from broker.protocol import downlink_filters
from broker.protocol.dialects import DEFAULT, Dialect
from broker.protocol.dialects.enos import combine_notice

_notice_ids = itertools.count(1)


class Presence:
    def __init__(
        self,
        cache: CredentialCache,
        writer: WriteBehind,
        sessions: SubDeviceSessions,
        links: Links | None = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
        on_online: Callable[[DeviceId], None] = lambda key: None,
    ) -> None:
        self.cache = cache
        self.writer = writer
        self.sessions = sessions
        self.links: Links = links or NoLinks()
        self.clock = clock
        self.direct: set[DeviceId] = set()
        # How each online device speaks: downlinks go in its dialect.
        self.dialects: dict[DeviceId, Dialect] = {}
        # Told when a device comes online, directly or through a gateway (commands wait
        # for that).
        self.on_online = on_online

    @property
    def online(self) -> int:
        """Devices online, directly or through a gateway. Read on every connect and
        disconnect, so it is counted as presence changes, never by a walk: a device is
        in `direct` or logged in through one gateway, never both."""
        return len(self.direct) + self.sessions.online

    def is_online(self, device: DeviceId) -> bool:
        return device in self.direct or self.sessions.through(*device) is not None

    # -- direct connections ----------------------------------------------------------------

    def connected(self, device: DeviceIdentity) -> None:
        key = device.key
        if self.sessions.through(*key) is not None:
            # One connection per device: connecting directly ends its gateway session.
            self.sub_offline(key, "connected directly")
        self.direct.add(key)
        self.dialects[key] = device.dialect
        self._online(key, "")
        # Sub-devices whose product has the integration access mode come online with it.
        for sub in sorted(self.cache.children.get(key, ())):
            if self.sessions.full(key):
                break
            product = self.cache.products.get(sub[0])
            credential = self.cache.devices.get(sub)
            if (
                product is not None
                and product.product.settings.gatewayAccessMode == "integration"
                and credential is not None
                and credential.enabled
            ):
                self.sub_online(device, sub)

    def disconnected(self, device: DeviceIdentity, reason: str = "disconnected") -> None:
        """Its connection ended: the offline event says why (the core's reason)."""
        key = device.key
        self._subs_gone(key, reason)
        if key in self.direct:
            self.direct.discard(key)
            self.dialects.pop(key, None)
            self._offline(key, reason)

    def revoked(self, product_key: str, device_key: str, deleted: bool) -> None:
        """A device disabled or deleted: it goes offline, and its gateway is told."""
        key = (product_key, device_key)
        reason = "deleted" if deleted else "disabled"
        self.sub_offline(key, reason, notice="delete" if deleted else "disable")
        if key in self.direct:
            # A gateway's sub-devices go with it now, not when its connection has ended.
            self._subs_gone(key, reason)
            self.direct.discard(key)
            self.dialects.pop(key, None)
            self._offline(key, reason)
            self.links.kick(device_session_key(product_key, device_key))

    def _subs_gone(self, gateway: DeviceId, reason: str) -> None:
        """Every sub-device logged in through a gateway that is gone goes offline."""
        session_key = device_session_key(*gateway)
        for sub in self.sessions.gateway_gone(gateway):
            self.links.unsubscribe(session_key, downlink_filters(*sub))
            self.dialects.pop(sub, None)
            self._offline(sub, f"gateway {gateway[0]}/{gateway[1]} {reason}")

    # -- sub-devices -------------------------------------------------------------------------

    def sub_online(self, gateway: DeviceIdentity, sub: DeviceId) -> None:
        if sub in self.direct:
            # One connection per device: logging in through a gateway ends a direct one.
            self.direct.discard(sub)
            self.links.kick(device_session_key(*sub))
        self.sessions.login(gateway.key, sub)
        self.dialects[sub] = gateway.dialect
        self.links.subscribe(gateway.session_key, downlink_filters(*sub))
        self._online(sub, f"through gateway {gateway}")

    def sub_offline(self, sub: DeviceId, reason: str, *, notice: str = "") -> bool:
        """Log a sub-device out of its gateway; `notice` (disable, delete) tells the gateway."""
        gateway = self.sessions.logout(sub)
        if gateway is None:
            return False
        self.links.unsubscribe(device_session_key(*gateway), downlink_filters(*sub))
        self.dialects.pop(sub, None)
        self._offline(sub, reason)
        if notice:
            self.notify(gateway, notice, sub)
        return True

    def notify(self, gateway: DeviceId, notice: str, sub: DeviceId) -> None:
        """`combine/{notice}` to a gateway about one of its sub-devices."""
        self.links.publish(*combine_notice(gateway, notice, sub, str(next(_notice_ids))))

    def notify_moved(self, gateway: DeviceId, sub: DeviceId) -> None:
        """Tell a gateway, in its dialect, that a sub-device was moved to another."""
        dialect = self.dialects.get(gateway, DEFAULT)
        self.links.publish(*dialect.topology_removed(gateway, sub, str(next(_notice_ids))))

    # -- what is written -------------------------------------------------------------------

    def _online(self, key: DeviceId, detail: str) -> None:
        first = self.cache.mark_activated(*key)
        now = self.clock.wall_ms()
        self.writer.presence(*key, True, now, activated=first)
        event = "; ".join(filter(None, [detail, "first activation" if first else ""]))
        self.writer.event(*key, now, "online", detail=event)
        self.on_online(key)

    def _offline(self, key: DeviceId, reason: str) -> None:
        if key not in self.cache.devices:
            return  # deleted: nothing is written for it any more
        now = self.clock.wall_ms()
        self.writer.presence(*key, False, now, activated=False)
        self.writer.event(*key, now, "offline", detail=reason)
