"""A simulated gateway: a `SimDevice` that puts its sub-devices in its topology, logs
them in (in batches, signed with each one's secret) and posts for them, as the EnOS SDK
does or, with the Alink dialect, as linkkit does (`combine/batch_login`, 50 a batch,
all or nothing)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from broker.protocol.dialects.base import DeviceId
from simulators.device import DeviceCredentials, SimDevice


class SimGateway(SimDevice):
    def __init__(
        self,
        creds: DeviceCredentials,
        subdevices: Sequence[DeviceCredentials],
        *args: Any,
        **kwargs: Any,
    ) -> None:
        super().__init__(creds, *args, **kwargs)
        self.subdevices = list(subdevices)
        self.logged_in: set[tuple[str, str]] = set()

    def _ext(self, rest: str) -> str:
        return f"/ext/session/{self.creds.product_key}/{self.creds.device_key}/{rest}"

    def _secrets(self, subs: Sequence[DeviceCredentials]) -> list[tuple[DeviceId, str]]:
        return [((sub.product_key, sub.device_key), sub.secret) for sub in subs]

    async def add_topology(self, batch: int = 100) -> list[dict[str, Any] | None]:
        """`thing/topo/add` for every sub-device, `batch` at a time."""
        dialect = self.creds.dialect
        replies = []
        for start in range(0, len(self.subdevices), batch):
            timestamp = str(int(time.time() * 1000))
            entries = [
                dialect.topology_entry(key, secret, timestamp)
                for key, secret in self._secrets(self.subdevices[start : start + batch])
            ]
            replies.append(
                await self.request(self.topic("thing/topo/add"), "thing.topo.add", entries)
            )
        return replies

    async def login_all(self, batch: int = 100) -> list[dict[str, Any] | None]:
        """Log every sub-device in, `batch` a request (at most the dialect's limit: EnOS's
        `combine/login/batch` takes each on its own, linkkit's `combine/batch_login` 50,
        all or nothing)."""
        dialect = self.creds.dialect
        batch = min(batch, dialect.login_batch_limit)
        replies = []
        for start in range(0, len(self.subdevices), batch):
            timestamp = str(int(time.time() * 1000))
            part = self._secrets(self.subdevices[start : start + batch])
            rest, method, params = dialect.login_batch(part, timestamp)
            reply = await self.request(self._ext(rest), method, params)
            if reply is not None:
                self.logged_in.update(dialect.logged_in(reply))
            replies.append(reply)
        return replies

    async def logout(self, sub: DeviceCredentials) -> dict[str, Any] | None:
        rest, method, params = self.creds.dialect.logout((sub.product_key, sub.device_key))
        reply = await self.request(self._ext(rest), method, params)
        self.logged_in.discard((sub.product_key, sub.device_key))
        return reply

    async def post_for(
        self, sub: DeviceCredentials, points: Mapping[str, Any], *, qos: int = 1
    ) -> dict[str, Any] | None:
        """A measurepoint post on the sub-device's own topic, through this connection."""
        return await self.post(
            points, qos=qos, product_key=sub.product_key, device_key=sub.device_key
        )
