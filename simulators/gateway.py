"""A simulated gateway: a `SimDevice` that puts its sub-devices in its topology, logs
them in (in batches, signed with each one's secret) and posts for them."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from broker.protocol import enos_connect_params, enos_sign
from simulators.device import DeviceCredentials, SimDevice


def signed_entry(sub: DeviceCredentials, client_id: str, timestamp: str) -> dict[str, str]:
    params = enos_connect_params(client_id, sub.product_key, sub.device_key, timestamp)
    return {
        "productKey": sub.product_key,
        "deviceKey": sub.device_key,
        "clientId": client_id,
        "timestamp": timestamp,
        "signMethod": "sha256",
        "sign": enos_sign(sub.secret, params, "sha256"),
    }


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

    async def add_topology(self, batch: int = 100) -> list[dict[str, Any] | None]:
        """`thing/topo/add` for every sub-device, `batch` at a time."""
        replies = []
        for start in range(0, len(self.subdevices), batch):
            timestamp = str(int(time.time() * 1000))
            entries = [
                signed_entry(sub, f"{sub.product_key}.{sub.device_key}", timestamp)
                for sub in self.subdevices[start : start + batch]
            ]
            replies.append(
                await self.request(self.topic("thing/topo/add"), "thing.topo.add", entries)
            )
        return replies

    async def login_all(self, batch: int = 100) -> list[dict[str, Any] | None]:
        """`combine/login/batch`, `batch` sub-devices a request, as the EnOS SDK signs it."""
        replies = []
        for start in range(0, len(self.subdevices), batch):
            timestamp = str(int(time.time() * 1000))
            part = self.subdevices[start : start + batch]
            params = {
                "clientId": "login.batch",
                "timestamp": timestamp,
                "signMethod": "sha256",
                "subDevices": [
                    {
                        "productKey": sub.product_key,
                        "deviceKey": sub.device_key,
                        "sign": signed_entry(sub, "login.batch", timestamp)["sign"],
                    }
                    for sub in part
                ],
            }
            reply = await self.request(
                self._ext("combine/login/batch"), "combine.login.batch", params
            )
            if reply is not None:
                for done in (reply.get("data") or {}).get("loginedSubDevices", []):
                    self.logged_in.add((done["productKey"], done["deviceKey"]))
            replies.append(reply)
        return replies

    async def logout(self, sub: DeviceCredentials) -> dict[str, Any] | None:
        params = {"productKey": sub.product_key, "deviceKey": sub.device_key}
        reply = await self.request(self._ext("combine/logout"), "combine.logout", params)
        self.logged_in.discard((sub.product_key, sub.device_key))
        return reply

    async def post_for(
        self, sub: DeviceCredentials, points: Mapping[str, Any], *, qos: int = 1
    ) -> dict[str, Any] | None:
        """A measurepoint post on the sub-device's own topic, through this connection."""
        return await self.post(
            points, qos=qos, product_key=sub.product_key, device_key=sub.device_key
        )
