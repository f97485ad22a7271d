"""EnOS (Envision's device SDK): the broker's own dialect, whose codes every part of
the broker decides in (docs/protocol.md)."""

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
from broker.protocol.envelope import encode_reply, encode_request
from broker.protocol.signs import (
    SECURE_MODE_DEVICE_SECRET,
    SECURE_MODE_PRODUCT_SECRET,
    EnosClientId,
    EnosCredentials,
    enos_connect_params,
    enos_credentials,
    enos_sign,
)
from broker.protocol.topics import EXT, SYS, Uplink, classify_enos_uplink, ext_prefix

_GATEWAY_FUNCTIONS = {
    (SYS, "thing/topo/add"): GatewayFunction.TOPO_ADD,
    (SYS, "thing/topo/delete"): GatewayFunction.TOPO_DELETE,
    (SYS, "thing/topo/get"): GatewayFunction.TOPO_GET,
    (SYS, "thing/device/register"): GatewayFunction.REGISTER,
    (EXT, "combine/login"): GatewayFunction.LOGIN,
    (EXT, "combine/login/batch"): GatewayFunction.LOGIN_BATCH,
    (EXT, "combine/logout"): GatewayFunction.LOGOUT,
}


def combine_notice(
    gateway: DeviceId, notice: str, sub: DeviceId, request_id: str
) -> tuple[str, bytes]:
    """`combine/{notice}` (disable, delete) to a gateway about one of its sub-devices."""
    payload = encode_request(
        request_id, f"combine.{notice}", {"productKey": sub[0], "deviceKey": sub[1]}
    )
    return f"{ext_prefix(*gateway)}combine/{notice}", payload


SUB_SIGN_METHOD = "sha256"  # what the EnOS SDK signs sub-devices with
LOGIN_BATCH_CLIENT_ID = "login.batch"  # the client id a batch login's signs name


class Enos(Dialect):
    name: ClassVar[str] = "enos"
    codes: ClassVar[Mapping[int, int]] = {}  # the broker's codes are EnOS's
    buffers_offline: ClassVar[bool] = True  # the SDK's resume: offline posts go up later
    login_batch_limit: ClassVar[int] = 1000

    def claims(self, client_id: str) -> bool:
        # `{dk}|...|`: the part before the first bar names no product (Alink's has `&`).
        return "&" not in client_id.partition("|")[0]

    def connect_sign(
        self, client: EnosClientId, product_key: str, device_key: str, secrets: ConnectSecrets
    ) -> ExpectedSign | SignProblem:
        activating = client.secure_mode == SECURE_MODE_PRODUCT_SECRET
        if activating and not secrets.dynamic_activation:
            # Dynamic activation: signed with the ProductSecret; the DeviceSecret is
            # pushed to the device once it is in (docs/protocol.md, section 5).
            return SignProblem(
                "dynamic-activation",
                "dynamic activation (securemode=3) is not enabled for this product",
                codes.DYNAMIC_ACTIVATION_DENIED,
            )
        if not activating and client.secure_mode != SECURE_MODE_DEVICE_SECRET:
            return SignProblem(
                "bad-client-id",
                f"securemode {client.secure_mode} is not supported",
                codes.SIGN_FAILED,
            )
        secret = secrets.product_secret if activating else secrets.device_secret
        params = enos_connect_params(client.cid, product_key, device_key, client.timestamp)
        return ExpectedSign(enos_sign(secret, params, client.sign_method), activating)

    def sub_device_sign(
        self, secret: str, sub: DeviceId, client_id: str, timestamp: str, method: str
    ) -> str:
        return enos_sign(secret, enos_connect_params(client_id, *sub, timestamp), method)

    def device_credentials(
        self,
        product_key: str,
        device_key: str,
        secret: str,
        now_ms: float,
        *,
        activate: bool = False,
    ) -> EnosCredentials:
        return enos_credentials(
            product_key,
            device_key,
            secret,
            str(int(now_ms)),  # milliseconds, as the SDK signs
            secure_mode=SECURE_MODE_PRODUCT_SECRET if activate else SECURE_MODE_DEVICE_SECRET,
        )

    def encode_reply(
        self, request_id: str, code: int, data: Any = "", message: str = "", method: str = ""
    ) -> bytes:
        return encode_reply(request_id, code, data, message)  # no method in EnOS's reply

    def classify_uplink(self, rest: str) -> tuple[Uplink, str] | None:
        return classify_enos_uplink(rest)

    def gateway_function(self, namespace: str, rest: str) -> GatewayFunction | None:
        return _GATEWAY_FUNCTIONS.get((namespace, rest))

    def property_set(self, points: Mapping[str, Any]) -> tuple[str, str, Any]:
        return (
            "thing/service/measurepoint/set",
            "thing.service.measurepoint.set",
            {"measurepoints": points},
        )

    def property_post(self, points: Mapping[str, Any], now_ms: int) -> tuple[str, str, Any]:
        params = {"measurepoints": dict(points), "time": now_ms}
        return "thing/measurepoint/post", "thing.measurepoint.post", params

    def topology_removed(
        self, gateway: DeviceId, sub: DeviceId, request_id: str
    ) -> tuple[str, bytes]:
        return combine_notice(gateway, "delete", sub, request_id)

    def registered(self, credentials: Mapping[str, str]) -> dict[str, str]:
        return dict(credentials)

    def resume_batch(
        self, device: DeviceId, posts: Sequence[Mapping[str, Any]]
    ) -> tuple[str, str, Any]:
        entries = [{"productKey": device[0], "deviceKey": device[1], **post} for post in posts]
        return "thing/measurepoint/resume/batch", "thing.measurepoint.resume.batch", entries

    def topology_entry(self, sub: DeviceId, secret: str, timestamp: str) -> dict[str, str]:
        return self._signed_entry(sub, secret, f"{sub[0]}.{sub[1]}", timestamp)

    def login_batch(
        self, subs: Sequence[tuple[DeviceId, str]], timestamp: str
    ) -> tuple[str, str, Any]:
        params = {
            "clientId": LOGIN_BATCH_CLIENT_ID,
            "timestamp": timestamp,
            "signMethod": SUB_SIGN_METHOD,
            "subDevices": [
                {
                    "productKey": sub[0],
                    "deviceKey": sub[1],
                    "sign": self.sub_device_sign(
                        secret, sub, LOGIN_BATCH_CLIENT_ID, timestamp, SUB_SIGN_METHOD
                    ),
                }
                for sub, secret in subs
            ],
        }
        return "combine/login/batch", "combine.login.batch", params

    def logged_in(self, reply: Mapping[str, Any]) -> list[DeviceId]:
        # Each sub-device on its own: the reply lists those that got in.
        done = (reply.get("data") or {}).get("loginedSubDevices", [])
        return [(entry["productKey"], entry["deviceKey"]) for entry in done]

    def logout(self, sub: DeviceId) -> tuple[str, str, Any]:
        params = {"productKey": sub[0], "deviceKey": sub[1]}
        return "combine/logout", "combine.logout", params

    def _signed_entry(
        self, sub: DeviceId, secret: str, client_id: str, timestamp: str
    ) -> dict[str, str]:
        return {
            "productKey": sub[0],
            "deviceKey": sub[1],
            "clientId": client_id,
            "timestamp": timestamp,
            "signMethod": SUB_SIGN_METHOD,
            "sign": self.sub_device_sign(secret, sub, client_id, timestamp, SUB_SIGN_METHOD),
        }


ENOS = Enos()
