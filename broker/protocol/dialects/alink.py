"""Alink (Alibaba's linkkit SDK), from which EnOS descends: an HMAC sign, the device's
name where EnOS has its key, properties as the params, and codes of its own
(docs/protocol.md, sections 1, 4, 6 and 7)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from broker.protocol import codes
from broker.protocol.dialects.base import (
    ConnectSecrets,
    DeviceId,
    Dialect,
    ExpectedSign,
    GatewayFunction,
    SignProblem,
)
from broker.protocol.envelope import encode_alink_reply, encode_request
from broker.protocol.signs import (
    EnosClientId,
    EnosCredentials,
    alink_connect_params,
    alink_credentials,
    alink_sign,
)
from broker.protocol.topics import EXT, SYS, Uplink, classify_alink_uplink, sys_prefix

PARAMETER_ERROR = 460  # Alink's "bad parameters"

# The one codes table: Alink's code for the broker's (EnOS's), where it has its own.
ALINK_CODES: Mapping[int, int] = {
    codes.PAYLOAD_FORMAT_ERROR: PARAMETER_ERROR,
    codes.DEVICE_NOT_FOUND: 6100,
    codes.DEVICE_DISABLED: 6204,
}

_GATEWAY_FUNCTIONS = {
    (SYS, "thing/topo/add"): GatewayFunction.TOPO_ADD,
    (SYS, "thing/topo/delete"): GatewayFunction.TOPO_DELETE,
    (SYS, "thing/topo/get"): GatewayFunction.TOPO_GET,
    (SYS, "thing/sub/register"): GatewayFunction.REGISTER,
    (EXT, "combine/login"): GatewayFunction.LOGIN,
    (EXT, "combine/batch_login"): GatewayFunction.LOGIN_ALL_OR_NONE,
    (EXT, "combine/batch_logout"): GatewayFunction.LOGOUT_BATCH,
}


SUB_SIGN_METHOD = "hmacsha256"  # what linkkit signs sub-devices with


class Alink(Dialect):
    name: ClassVar[str] = "alink"
    codes: ClassVar[Mapping[int, int]] = ALINK_CODES
    login_batch_limit: ClassVar[int] = 50  # combine/batch_login: all or nothing

    def claims(self, client_id: str) -> bool:
        # `{pk}&{dn}|...|`: the part before the first bar names the product.
        return "&" in client_id.partition("|")[0]

    def connect_sign(
        self, client: EnosClientId, product_key: str, device_key: str, secrets: ConnectSecrets
    ) -> ExpectedSign | SignProblem:
        # linkkit: securemode 2 (TLS) or 3 (TCP), both signed with the device secret.
        if client.cid != f"{product_key}&{device_key}":
            return SignProblem(
                "bad-client-id", "the client id names another device", codes.SIGN_FAILED
            )
        params = alink_connect_params(product_key, device_key, client.timestamp)
        return ExpectedSign(alink_sign(secrets.device_secret, params, client.sign_method))

    def sub_device_sign(
        self, secret: str, sub: DeviceId, client_id: str, timestamp: str, method: str
    ) -> str:
        # An HMAC keyed by the sub-device's secret (docs/protocol.md, section 6).
        content = {
            "clientId": client_id,
            "deviceName": sub[1],
            "productKey": sub[0],
            "timestamp": timestamp,
        }
        return alink_sign(secret, content, method)

    def device_credentials(
        self,
        product_key: str,
        device_key: str,
        secret: str,
        now_ms: float,
        *,
        activate: bool = False,
    ) -> EnosCredentials:
        # Seconds, as linkkit signs; linkkit has no dynamic activation here.
        return alink_credentials(product_key, device_key, secret, str(int(now_ms // 1000)))

    def encode_reply(
        self, request_id: str, code: int, data: Any = "", message: str = "", method: str = ""
    ) -> bytes:
        return encode_alink_reply(request_id, code, data, message, method)

    def classify_uplink(self, rest: str) -> tuple[Uplink, str] | None:
        return classify_alink_uplink(rest)

    def gateway_function(self, namespace: str, rest: str) -> GatewayFunction | None:
        return _GATEWAY_FUNCTIONS.get((namespace, rest))

    def property_set(self, points: Mapping[str, Any]) -> tuple[str, str, Any]:
        # Alink sets properties with the properties themselves as params.
        return "thing/service/property/set", "thing.service.property.set", points

    def property_post(self, points: Mapping[str, Any], now_ms: int) -> tuple[str, str, Any]:
        return "thing/event/property/post", "thing.event.property.post", dict(points)

    def topology_removed(
        self, gateway: DeviceId, sub: DeviceId, request_id: str
    ) -> tuple[str, bytes]:
        # `thing/topo/change` with status 1: the sub-device is no longer the gateway's.
        params = {"status": 1, "subList": [{"productKey": sub[0], "deviceName": sub[1]}]}
        payload = encode_request(request_id, "thing.topo.change", params)
        return f"{sys_prefix(*gateway)}thing/topo/change", payload

    def registered_key(self, entry: Mapping[str, Any]) -> str | None:
        name = entry.get("deviceName")
        return name if isinstance(name, str) else None  # Alink's deviceName is the key

    def registered(self, credentials: Mapping[str, str]) -> dict[str, str]:
        return {
            "productKey": credentials["productKey"],
            "deviceName": credentials["deviceKey"],
            "deviceSecret": credentials["deviceSecret"],
        }

    def topology_entry(self, sub: DeviceId, secret: str, timestamp: str) -> dict[str, str]:
        # linkkit names a sub-device by its client id, `{pk}&{dn}`, and signs with its secret.
        client_id = f"{sub[0]}&{sub[1]}"
        return {
            "productKey": sub[0],
            "deviceName": sub[1],
            "clientId": client_id,
            "timestamp": timestamp,
            "signmethod": SUB_SIGN_METHOD,
            "sign": self.sub_device_sign(secret, sub, client_id, timestamp, SUB_SIGN_METHOD),
        }

    def login_batch(
        self, subs: Sequence[tuple[DeviceId, str]], timestamp: str
    ) -> tuple[str, str, Any]:
        entries = [self.topology_entry(sub, secret, timestamp) for sub, secret in subs]
        params = {"signMethod": SUB_SIGN_METHOD, "deviceList": entries}
        return "combine/batch_login", "combine.batch.login", params

    def logged_in(self, reply: Mapping[str, Any]) -> list[DeviceId]:
        if reply.get("code") != 200:  # all or nothing
            return []
        return [(entry["productKey"], entry["deviceName"]) for entry in reply.get("data") or []]

    def logout(self, sub: DeviceId) -> tuple[str, str, Any]:
        # linkkit logs out in batches: this is a batch of one.
        entries = [{"productKey": sub[0], "deviceName": sub[1]}]
        return "combine/batch_logout", "combine.batch.logout", entries


ALINK = Alink()
