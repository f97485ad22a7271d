"""Which sub-devices are logged in, through which gateway: live state, in memory.

A sub-device is online through at most one gateway at a time; a gateway has at most
`limit` sub-devices online (EnOS: 200). Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Iterator

DeviceId = tuple[str, str]  # (ProductKey, DeviceKey)


class SubDeviceSessions:
    def __init__(self, limit: int = 200) -> None:
        self.limit = limit
        self._gateway: dict[DeviceId, DeviceId] = {}
        self._subs: dict[DeviceId, set[DeviceId]] = {}

    def through(self, product_key: str, device_key: str) -> DeviceId | None:
        """The gateway a sub-device is logged in through, if it is."""
        return self._gateway.get((product_key, device_key))

    def of(self, gateway: DeviceId) -> Iterator[DeviceId]:
        return iter(tuple(self._subs.get(gateway, ())))

    @property
    def online(self) -> int:
        """Sub-devices logged in, through any gateway (kept by the dict: no walk)."""
        return len(self._gateway)

    def count(self, gateway: DeviceId) -> int:
        return len(self._subs.get(gateway, ()))

    def full(self, gateway: DeviceId) -> bool:
        return self.count(gateway) >= self.limit

    def login(self, gateway: DeviceId, sub: DeviceId) -> None:
        self.logout(sub)
        self._gateway[sub] = gateway
        self._subs.setdefault(gateway, set()).add(sub)

    def logout(self, sub: DeviceId) -> DeviceId | None:
        """Log a sub-device out; returns the gateway it was logged in through."""
        gateway = self._gateway.pop(sub, None)
        if gateway is not None:
            subs = self._subs.get(gateway)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[gateway]
        return gateway

    def gateway_gone(self, gateway: DeviceId) -> list[DeviceId]:
        """Log out every sub-device of a gateway whose connection ended."""
        subs = sorted(self._subs.pop(gateway, set()))
        for sub in subs:
            self._gateway.pop(sub, None)
        return subs
