"""A simulated gateway: a `SimDevice` that puts its sub-devices in its topology, logs
them in (in batches, signed with each one's secret) and posts for them, as the EnOS SDK
does or, with the Alink dialect, as linkkit does (`combine/batch_login`, 50 a batch,
all or nothing)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from broker.protocol import alink_sign, enos_connect_params, enos_sign
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


ALINK_BATCH = 50  # linkkit's combine/batch_login takes at most 50 sub-devices
ALINK_SIGN_METHOD = "hmacsha256"


def alink_entry(sub: DeviceCredentials, timestamp: str) -> dict[str, str]:
    """A sub-device as linkkit names and signs it: an HMAC keyed by its own secret."""
    client_id = f"{sub.product_key}&{sub.device_key}"
    content = {
        "clientId": client_id,
        "deviceName": sub.device_key,
        "productKey": sub.product_key,
        "timestamp": timestamp,
    }
    return {
        "productKey": sub.product_key,
        "deviceName": sub.device_key,
        "clientId": client_id,
        "timestamp": timestamp,
        "signmethod": ALINK_SIGN_METHOD,
        "sign": alink_sign(sub.secret, content, ALINK_SIGN_METHOD),
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

    @property
    def alink(self) -> bool:
        return self.creds.dialect == "alink"

    async def add_topology(self, batch: int = 100) -> list[dict[str, Any] | None]:
        """`thing/topo/add` for every sub-device, `batch` at a time."""
        replies = []
        for start in range(0, len(self.subdevices), batch):
            timestamp = str(int(time.time() * 1000))
            part = self.subdevices[start : start + batch]
            entries = [
                alink_entry(sub, timestamp)
                if self.alink
                else signed_entry(sub, f"{sub.product_key}.{sub.device_key}", timestamp)
                for sub in part
            ]
            replies.append(
                await self.request(self.topic("thing/topo/add"), "thing.topo.add", entries)
            )
        return replies

    async def login_all(self, batch: int = 100) -> list[dict[str, Any] | None]:
        """`combine/login/batch`, `batch` sub-devices a request, as the EnOS SDK signs it
        (Alink: `combine/batch_login`, at most 50 a request)."""
        if self.alink:
            return await self._alink_login_all(min(batch, ALINK_BATCH))
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

    async def _alink_login_all(self, batch: int) -> list[dict[str, Any] | None]:
        replies = []
        for start in range(0, len(self.subdevices), batch):
            timestamp = str(int(time.time() * 1000))
            entries = [
                alink_entry(sub, timestamp) for sub in self.subdevices[start : start + batch]
            ]
            params = {"signMethod": ALINK_SIGN_METHOD, "deviceList": entries}
            reply = await self.request(
                self._ext("combine/batch_login"), "combine.batch.login", params
            )
            if reply is not None and reply.get("code") == 200:  # all or nothing
                for done in reply.get("data") or []:
                    self.logged_in.add((done["productKey"], done["deviceName"]))
            replies.append(reply)
        return replies

    async def logout(self, sub: DeviceCredentials) -> dict[str, Any] | None:
        if self.alink:  # linkkit logs out in batches: this is a batch of one
            entries = [{"productKey": sub.product_key, "deviceName": sub.device_key}]
            topic = self._ext("combine/batch_logout")
            reply = await self.request(topic, "combine.batch.logout", entries)
        else:
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
