"""Gateways (docs/protocol.md, section 6): topology over MQTT and the REST API, sub-device
login and logout, and registration of new sub-devices.

Every request is answered on its `_reply` topic with EnOS's codes. Topology changes go
through the registry's rules (`Registry.attach`); who is logged in where lives in
`Presence`. Sub-device signs are the CONNECT sign with the sub-device's secret.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from broker.clock import SYSTEM_CLOCK, Clock
from broker.gate.connect_guard import ConnectGuard
from broker.gate.credentials import CredentialCache, DeviceId
from broker.gate.identity import DeviceIdentity
from broker.gate.presence import Presence
from broker.gate.routing import PAYLOAD_NOT_JSON, Outcome, Result, fault
from broker.gate.writer import WriteBehind
from broker.protocol import (
    ClientIdError,
    EnvelopeError,
    PayloadNotJson,
    Request,
    codes,
    parse_request,
    request_id_of,
    sign_matches,
)
from broker.protocol.dialects import Dialect, GatewayFunction
from broker.protocol.signs import timestamp_ms, timestamp_problem
from broker.protocol.topics import SYS
from registry import Attachment, Conflict, Device, Registry, RegistryError

MAX_REGISTER = 1000  # devices in one thing/device/register (the SDK's own cap)

Handler = Callable[["GatewayService", DeviceIdentity, Request], Awaitable[Result]]


def _batch(gateway: DeviceIdentity, params: Any, field: str) -> list[Any] | Result:
    """A batch login's entries, at most the gateway's dialect's limit (EnOS's 1,000,
    Alink's 50); else the fault to answer."""
    entries = params.get(field) if isinstance(params, dict) else None
    if not isinstance(entries, list) or not entries:
        return fault(codes.PAYLOAD_FORMAT_ERROR, f"params.{field} must be a list")
    limit = gateway.dialect.login_batch_limit
    if len(entries) > limit:
        return fault(
            codes.PAYLOAD_FORMAT_ERROR,
            f"at most {limit} sub-devices in one batch, not {len(entries)}",
        )
    return entries


def _sub_of(entry: Mapping[str, Any]) -> DeviceId:
    """A sub-device as a request names it: deviceKey in EnOS, deviceName in Alink."""
    return (
        str(entry.get("productKey", "")),
        str(entry.get("deviceKey") or entry.get("deviceName", "")),
    )


class GatewayService:
    def __init__(
        self,
        registry: Registry,
        cache: CredentialCache,
        presence: Presence,
        writer: WriteBehind,
        guard: ConnectGuard | None = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.registry = registry
        self.cache = cache
        self.presence = presence
        self.writer = writer
        self.clock = clock
        # Sub-device signs are held to CONNECT's rules: --sign-max-age and no reuse.
        self.guard = guard or ConnectGuard()

    # -- MQTT -----------------------------------------------------------------------------

    async def request(
        self, gateway: DeviceIdentity, namespace: str, rest: str, topic: str, payload: bytes
    ) -> Outcome | None:
        """A gateway function on the device's own topics, or None if `rest` is none."""
        function = gateway.dialect.gateway_function(namespace, rest)
        handler = FUNCTIONS.get(function) if function is not None else None
        if handler is None:
            return None
        try:
            request = parse_request(payload)
        except EnvelopeError as exc:
            not_json = isinstance(exc, PayloadNotJson)
            code = PAYLOAD_NOT_JSON if not_json else codes.PAYLOAD_FORMAT_ERROR
            return self._answer(
                gateway, topic, payload, request_id_of(payload), fault(code, str(exc))
            )
        if not self._is_gateway(gateway):
            result = fault(
                codes.TOPO_ADD_FAILED if namespace == SYS else codes.NOT_GATEWAYS_SUB_DEVICE,
                f"{gateway} is not a gateway",
            )
        else:
            try:
                result = await handler(self, gateway, request)
            except RegistryError as exc:
                result = fault(codes.PAYLOAD_FORMAT_ERROR, exc.msg)
        return self._answer(gateway, topic, payload, request.id, result, request.method)

    def _answer(
        self,
        gateway: DeviceIdentity,
        topic: str,
        payload: bytes,
        request_id: str,
        result: Result,
        method: str = "",
    ) -> Outcome:
        self.writer.event(
            *gateway.key,
            self.clock.wall_ms(),
            "up",
            topic=topic,
            payload=payload,
            code=result.code,
            detail=result.message,
        )
        reply = gateway.dialect.reply(request_id, result.code, result.data, result.message, method)
        return Outcome(result.ok, reply)

    def _is_gateway(self, gateway: DeviceIdentity) -> bool:
        product = self.cache.products.get(gateway.product_key)
        return product is not None and product.product.settings.deviceType == "gateway"

    def _integration(self, sub: DeviceId) -> bool:
        """The sub-device's product has the integration access mode (issue 16: the mode
        is the sub-device product's)."""
        product = self.cache.products.get(sub[0])
        return product is not None and product.product.settings.gatewayAccessMode == "integration"

    def _check_sign(
        self,
        org_id: str,
        sub: DeviceId,
        client_id: Any,
        timestamp: Any,
        method: Any,
        sign: Any,
        dialect: Dialect,
    ) -> Result | None:
        """The sub-device exists in the gateway's organisation and the sign is its
        secret's, fresh and (with --sign-max-age) not used before; None when all hold."""
        credential = self.cache.devices.get(sub)
        label = f"{sub[0]}/{sub[1]}"
        if credential is None or credential.org_id != org_id:
            # Another organisation's device is answered as no device at all, so that
            # its keys cannot be found out by trying them.
            return fault(codes.DEVICE_NOT_FOUND, f"sub-device {label} does not exist")
        if not all(isinstance(v, str) and v for v in (client_id, timestamp, method, sign)):
            return fault(
                codes.PAYLOAD_FORMAT_ERROR,
                f"{label}: clientId, timestamp, signMethod and sign are required strings",
            )
        try:
            stamp = timestamp_ms(timestamp)
            expected = dialect.sub_device_sign(credential.secret, sub, client_id, timestamp, method)
        except ClientIdError as exc:
            return fault(codes.SIGN_FAILED, f"{label}: {exc}")
        if not sign_matches(expected, sign):
            return fault(codes.SIGN_FAILED, f"{label}: the sign does not match its secret")
        max_age = self.guard.sign_max_age
        problem = timestamp_problem(stamp, self.clock.wall_ms(), max_age)
        if problem is not None:
            return fault(codes.SIGN_FAILED, f"{label}: {problem}")
        if max_age is not None and self.guard.signs.used(sub, sign):
            return fault(
                codes.SIGN_FAILED,
                f"{label}: this sign was used before: with --sign-max-age every login signs anew",
            )
        return None

    # -- topology -------------------------------------------------------------------------

    async def _topo_add(self, gateway: DeviceIdentity, request: Request) -> Result:
        entries = request.params
        if not isinstance(entries, list) or not entries:
            return fault(codes.PAYLOAD_FORMAT_ERROR, "params must be a list of sub-devices")
        subs: list[DeviceId] = []
        for index, entry in enumerate(entries):
            if not isinstance(entry, dict):
                return fault(codes.PAYLOAD_FORMAT_ERROR, f"params[{index}] must be an object")
            sub = _sub_of(entry)
            problem = self._check_sign(
                gateway.org_id,
                sub,
                entry.get("clientId"),
                entry.get("timestamp"),
                entry.get("signMethod", entry.get("signmethod")),
                entry.get("sign"),
                gateway.dialect,
            )
            if problem is not None:
                if problem.code == codes.DEVICE_NOT_FOUND:
                    problem.code = codes.TOPO_ADD_FAILED
                problem.message = f"params[{index}]: {problem.message}"
                return problem
            subs.append(sub)
        gateway_record = await self._record(gateway.org_id, gateway.key)
        for index, sub in enumerate(subs):
            refused = await self.add(gateway_record, await self._record(gateway.org_id, sub))
            if refused is not None:
                return fault(codes.TOPO_ADD_FAILED, f"params[{index}]: {refused.msg}")
        return Result()

    async def _topo_delete(self, gateway: DeviceIdentity, request: Request) -> Result:
        entries = request.params
        if not isinstance(entries, list) or not entries:
            return fault(codes.PAYLOAD_FORMAT_ERROR, "params must be a list of sub-devices")
        for index, entry in enumerate(entries):
            if not isinstance(entry, dict):
                return fault(codes.PAYLOAD_FORMAT_ERROR, f"params[{index}] must be an object")
            sub = _sub_of(entry)
            problem = await self.delete(gateway.key, sub, org_id=gateway.org_id)
            if problem is not None:
                problem.message = f"params[{index}]: {problem.message}"
                return problem
        return Result()

    async def _topo_get(self, gateway: DeviceIdentity, request: Request) -> Result:
        subs = await self.registry.sub_device_records(*gateway.key)
        data = [
            {"productKey": d.productKey, "deviceKey": d.deviceKey, "assetId": d.assetId}
            for d in subs
        ]
        return Result(data=data)

    async def _record(self, org_id: str, device: DeviceId) -> Device:
        return await self.registry.get_device(org_id, *device)

    async def add(self, gateway: Device, sub: Device) -> RegistryError | None:
        """Attach a sub-device (MQTT and API alike); the refusal, if refused."""
        gateway_id = (gateway.productKey, gateway.deviceKey)
        sub_id = (sub.productKey, sub.deviceKey)
        if (
            self._integration(sub_id)
            and self.cache.gateway_of.get(sub_id) != gateway_id
            and len(self.cache.children.get(gateway_id, ())) >= self.presence.sessions.limit
        ):
            return Conflict(
                f"gateway {gateway_id[0]}/{gateway_id[1]} has {self.presence.sessions.limit}"
                " sub-devices, the most an integration gateway keeps online"
            )
        try:
            attachment = await self.registry.attach(gateway, sub)
        except RegistryError as exc:
            return exc
        self._attached(gateway, sub_id, attachment)
        return None

    def _attached(self, gateway: Device, sub: DeviceId, attachment: Attachment) -> None:
        moved = attachment.moved_from
        if moved is not None:
            old = (moved.gatewayProductKey, moved.gatewayDeviceKey)
            self.presence.sub_offline(
                sub, f"moved to gateway {gateway.productKey}/{gateway.deviceKey}"
            )
            self.presence.notify_moved(old, sub)
        gateway_id = (gateway.productKey, gateway.deviceKey)
        if self._integration(sub) and gateway_id in self.presence.direct:
            identity = DeviceIdentity(gateway.productKey, gateway.deviceKey, gateway.orgId)
            self.presence.sub_online(identity, sub)

    async def delete(self, gateway: DeviceId, sub: DeviceId, *, org_id: str) -> Result | None:
        """Detach a sub-device (MQTT and API alike); a fault if refused."""
        label = f"{sub[0]}/{sub[1]}"
        if self.cache.gateway_of.get(sub) != gateway:
            return fault(
                codes.NOT_GATEWAYS_SUB_DEVICE, f"{label} is not a sub-device of this gateway"
            )
        online = self.presence.sessions.through(*sub) == gateway
        if online and not self._integration(sub):
            return fault(
                codes.TOPO_DELETE_FAILED, f"{label} is online; log it out before deleting it"
            )
        await self.registry.detach(await self._record(org_id, sub))
        if online:
            self.presence.sub_offline(sub, "removed from the gateway's topology")
        return None

    # -- sub-device sessions ----------------------------------------------------------------

    def login(
        self,
        gateway: DeviceIdentity,
        sub: DeviceId,
        client_id: Any,
        timestamp: Any,
        method: Any,
        sign: Any,
        *,
        apply: bool = True,
    ) -> Result:
        """Log a sub-device in; with `apply` False, only check that it could be."""
        problem = self._check_sign(
            gateway.org_id, sub, client_id, timestamp, method, sign, gateway.dialect
        )
        if problem is not None:
            return problem
        label = f"{sub[0]}/{sub[1]}"
        credential = self.cache.devices[sub]
        product = self.cache.products.get(sub[0])
        if not credential.enabled:
            return fault(codes.DEVICE_DISABLED, f"{label} is disabled")
        if self.cache.gateway_of.get(sub) != gateway.key:
            return fault(
                codes.NOT_GATEWAYS_SUB_DEVICE,
                f"{label} is not in this gateway's topology; add it with thing/topo/add",
            )
        if product is not None:
            specified = product.product.settings.specifiedGateway
            if specified.enabled and not (
                gateway.product_key in specified.gatewayProductKeys
                or any((r.productKey, r.deviceKey) == gateway.key for r in specified.gatewayDevices)
            ):
                return fault(
                    codes.NOT_GATEWAYS_SUB_DEVICE,
                    f"product {sub[0]} specifies its gateways, and this is not one of them",
                )
        refused = self.cache.activation_refused(sub, self.clock.wall_ms())
        if refused is not None:
            return fault(codes.DEVICE_DISABLED, f"{label}: {refused[1]}")
        sessions = self.presence.sessions
        if sessions.through(*sub) != gateway.key and sessions.full(gateway.key):
            return fault(
                codes.TOO_MANY_REQUESTS,
                f"{sessions.limit} sub-devices are online through this gateway, its limit",
            )
        if apply:
            self.guard.signs.record(sub, str(sign))
            self.cache.codes.take(sub, self.clock.wall_ms())
        if apply and sessions.through(*sub) != gateway.key:
            self.presence.sub_online(gateway, sub)
        return Result(
            data={"productKey": sub[0], "deviceKey": sub[1], "assetId": credential.asset_id}
        )

    async def _login(self, gateway: DeviceIdentity, request: Request) -> Result:
        params = request.params
        if not isinstance(params, dict):
            return fault(codes.PAYLOAD_FORMAT_ERROR, "params must be a JSON object")
        sub = _sub_of(params)
        return self.login(
            gateway,
            sub,
            params.get("clientId"),
            params.get("timestamp"),
            params.get("signMethod", params.get("signmethod")),
            params.get("sign"),
        )

    async def _login_batch(self, gateway: DeviceIdentity, request: Request) -> Result:
        params = request.params
        entries = _batch(gateway, params, "subDevices")
        if isinstance(entries, Result):
            return entries
        method = params.get("signMethod", params.get("signmethod"))
        logged: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        for entry in entries:
            entry = entry if isinstance(entry, dict) else {}
            sub = _sub_of(entry)
            result = self.login(
                gateway,
                sub,
                params.get("clientId"),
                params.get("timestamp"),
                method,
                entry.get("sign"),
            )
            if result.ok:
                logged.append(result.data)
            else:
                failed.append(
                    {
                        "productKey": sub[0],
                        "deviceKey": sub[1],
                        "code": result.code,
                        "message": result.message,
                    }
                )
        data = {"loginedSubDevices": logged, "failedSubDevices": failed}
        if failed:
            return Result(codes.DEVICE_DISABLED, f"{len(failed)} of {len(entries)} failed", data)
        return Result(data={"loginedSubDevices": logged})

    async def _login_all_or_none(self, gateway: DeviceIdentity, request: Request) -> Result:
        """Alink's `combine/batch_login`: at most 50, all or nothing (docs/protocol.md, 6, 8)."""
        params = request.params
        entries = _batch(gateway, params, "deviceList")
        if isinstance(entries, Result):
            return entries
        method = params.get("signMethod", params.get("signmethod"))
        subs: list[tuple[DeviceId, dict[str, Any]]] = []
        failed: list[dict[str, Any]] = []
        first_code = 0
        for entry in entries:
            entry = entry if isinstance(entry, dict) else {}
            sub = (str(entry.get("productKey", "")), str(entry.get("deviceName", "")))
            own = entry.get("signMethod", entry.get("signmethod", method))
            args = (entry.get("clientId"), entry.get("timestamp"), own, entry.get("sign"))
            result = self.login(gateway, sub, *args, apply=False)
            if not result.ok:
                first_code = first_code or result.code
                failed.append({"productKey": sub[0], "deviceName": sub[1], "code": result.code})
            subs.append((sub, entry))
        if failed:  # all or nothing: nobody is logged in
            return Result(first_code, f"{len(failed)} of {len(entries)} failed", failed)
        for sub, entry in subs:
            own = entry.get("signMethod", entry.get("signmethod", method))
            args = (entry.get("clientId"), entry.get("timestamp"), own, entry.get("sign"))
            self.login(gateway, sub, *args)
        return Result(data=[{"productKey": pk, "deviceName": dn} for (pk, dn), _ in subs])

    async def _logout_batch(self, gateway: DeviceIdentity, request: Request) -> Result:
        entries = request.params
        if not isinstance(entries, list) or not entries:
            return fault(codes.PAYLOAD_FORMAT_ERROR, "params must be a list of sub-devices")
        for entry in entries:
            entry = entry if isinstance(entry, dict) else {}
            sub = (str(entry.get("productKey", "")), str(entry.get("deviceName", "")))
            if self.presence.sessions.through(*sub) == gateway.key:
                self.presence.sub_offline(sub, "logged out")
        return Result(data=[])

    async def _logout(self, gateway: DeviceIdentity, request: Request) -> Result:
        params = request.params
        if not isinstance(params, dict):
            return fault(codes.PAYLOAD_FORMAT_ERROR, "params must be a JSON object")
        sub = _sub_of(params)
        if self.cache.gateway_of.get(sub) != gateway.key:
            return fault(
                codes.NOT_GATEWAYS_SUB_DEVICE,
                f"{sub[0]}/{sub[1]} is not a sub-device of this gateway",
            )
        if self.presence.sessions.through(*sub) == gateway.key:
            self.presence.sub_offline(sub, "logged out")
        return Result(data={"productKey": sub[0], "deviceKey": sub[1]})

    # -- registration ------------------------------------------------------------------------

    async def _register(self, gateway: DeviceIdentity, request: Request) -> Result:
        entries = request.params
        if not isinstance(entries, list) or not entries:
            return fault(codes.PAYLOAD_FORMAT_ERROR, "params must be a list of devices")
        if len(entries) > MAX_REGISTER:
            return fault(codes.PAYLOAD_FORMAT_ERROR, f"at most {MAX_REGISTER} devices at once")
        bodies: list[Mapping[str, Any]] = []
        for index, entry in enumerate(entries):
            if not isinstance(entry, dict):
                return fault(codes.PAYLOAD_FORMAT_ERROR, f"params[{index}] must be an object")
            product = self.cache.products.get(str(entry.get("productKey", "")))
            if product is None or product.product.orgId != gateway.org_id:
                return fault(codes.DEVICE_NOT_FOUND, f"params[{index}]: no such product")
            settings = product.product.settings
            if not settings.dynamicActivateEnabled:
                return fault(
                    codes.DYNAMIC_ACTIVATION_DENIED,
                    f"params[{index}]: product {product.product.productKey} does not allow"
                    " dynamic activation, so its devices cannot be registered by a gateway",
                )
            if settings.deviceType == "gateway":
                return fault(codes.DYNAMIC_ACTIVATION_DENIED, f"params[{index}]: a gateway product")
            body = {k: v for k, v in entry.items() if k in REGISTER_FIELDS}
            named = gateway.dialect.registered_key(entry)
            if named is not None:
                body["deviceKey"] = named
            body.setdefault("deviceName", entry.get("deviceKey") or "sub-device")
            body.setdefault("timezone", "+00:00")
            bodies.append(body)
        try:
            created = await self.registry.create_devices(gateway.org_id, bodies)
        except RegistryError as exc:
            return fault(PARAMETER_ERROR, exc.msg)
        return Result(data=[gateway.dialect.registered(d.credentials()) for d in created])


PARAMETER_ERROR = 460
REGISTER_FIELDS = frozenset(
    {"productKey", "deviceKey", "deviceName", "deviceDesc", "timezone", "deviceAttributes"}
)

# What answers each gateway request; the dialect says which topic carries which.
FUNCTIONS: dict[GatewayFunction, Handler] = {
    GatewayFunction.TOPO_ADD: GatewayService._topo_add,
    GatewayFunction.TOPO_DELETE: GatewayService._topo_delete,
    GatewayFunction.TOPO_GET: GatewayService._topo_get,
    GatewayFunction.REGISTER: GatewayService._register,
    GatewayFunction.LOGIN: GatewayService._login,
    GatewayFunction.LOGIN_BATCH: GatewayService._login_batch,
    GatewayFunction.LOGIN_ALL_OR_NONE: GatewayService._login_all_or_none,
    GatewayFunction.LOGOUT: GatewayService._logout,
    GatewayFunction.LOGOUT_BATCH: GatewayService._logout_batch,
}
