"""The router: what a device's PUBLISH means, whether it fits the thing model, and the
reply it gets (docs/protocol.md, sections 2 and 4). No amqtt here.

`Router.uplink` returns an `Outcome`: whether the message goes on to subscribers (or
what goes instead, for custom topics), and the reply payload for `<topic>_reply`.
Accepted data is handed to the write-behind sinks. A fault is always a reply with a
code and a message (or, on a custom topic, which has no reply, a logged code), never
an exception.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from broker.clock import SYSTEM_CLOCK, Clock
from broker.gate.codecs import PayloadCodecs
from broker.gate.credentials import CredentialCache, ProductCredential
from broker.gate.identity import DeviceIdentity
from broker.gate.writer import Note, WriteBehind
from broker.protocol import (
    EnvelopeError,
    PayloadNotJson,
    Request,
    Uplink,
    codes,
    parse_device_topic,
    parse_request,
    request_id_of,
)
from broker.protocol.dialects import SCRIPT_DIALECT
from broker.protocol.scripts import SCRIPT_BAD_RESULT, ScriptError
from broker.protocol.topics import SYS, USER, untagged
from registry import CompiledModel, Registry, RegistryError, Violation

log = logging.getLogger("gatehouse.gate")

DEFAULT_MAX_PAYLOAD = 512 * 1024  # EnOS's limit (docs/protocol.md, section 8)
MAX_ATTRIBUTES = 100
PAYLOAD_NOT_JSON = 6207  # the EnOS SDK's "payload must be JSON"
PARAMETER_ERROR = 460  # the EnOS SDK's "bad parameters": params that break the thing model
NO_METHOD = 6450  # Alink: no method after raw decoding
NOT_STORED = "not stored: the registry cannot write; try again"
UNPARSED_LOG_INTERVAL = 60.0  # seconds between log lines for one device's failing parse
UNPARSED_LOG_KEYS = 10_000  # bound on the memory that throttling takes


@dataclass(frozen=True, slots=True)
class Outcome:
    accepted: bool  # route the message on to subscribers
    reply: bytes | None = None  # published on `<topic>_reply`
    # Done when what the message wrote is stored; the reply and PUBACK wait for it.
    stored: asyncio.Future[None] | None = None
    # The reply instead of `reply` if it could not be stored (a success reply would lie):
    # bytes, or how to make them, for replies that cost a script call to encode.
    unstored_reply: bytes | Callable[[], Awaitable[bytes]] | None = None
    # Called once the reply has gone out (or at once, if there is none).
    then: Callable[[], None] | None = None
    # (topic, payload) routed to subscribers instead of the PUBLISH as it came, and
    # never retained: a custom topic's message (parsed, on its untagged topic).
    delivery: tuple[str, bytes] | None = None
    # Not routed for being over the payload limit: counted as the core counts its own.
    oversized: bool = False

    def followed_by(self, then: Callable[[], None]) -> Outcome:
        return replace(self, then=then)

    async def not_stored_reply(self) -> bytes | None:
        """The reply to send when what the message wrote could not be stored."""
        unstored = self.unstored_reply
        if unstored is None:
            return self.reply  # a fault reply already: it claims nothing was stored
        return unstored if isinstance(unstored, bytes) else await unstored()


@dataclass(slots=True)
class Result:
    code: int = codes.OK
    message: str = ""
    data: Any = ""
    latest: list[tuple[str, str, str, Any, int]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.code == codes.OK


def fault(code: int, message: str) -> Result:
    return Result(code, message)


def _violations(problems: list[Violation]) -> str:
    shown = "; ".join(str(p) for p in problems[:5])
    more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
    return shown + more


def _time_of(params: Mapping[str, Any], now_ms: int) -> int | None:
    stamp = params.get("time", now_ms)
    if isinstance(stamp, bool) or not isinstance(stamp, int | float) or stamp < 0:
        return None
    return int(stamp)


# Whether a device may post for (pk, dk) in a batch, given allowOfflineSubDevice:
# None if it may, else the reply code and why.
PostFor = Callable[[DeviceIdentity, str, str, bool], tuple[int, str] | None]


def own_device_only(
    device: DeviceIdentity, product_key: str, device_key: str, allow_offline: bool
) -> tuple[int, str] | None:
    if (product_key, device_key) == device.key:
        return None
    return codes.NOT_GATEWAYS_SUB_DEVICE, f"{product_key}/{device_key} is not this device"


class Router:
    def __init__(
        self,
        registry: Registry,
        cache: CredentialCache,
        writer: WriteBehind,
        *,
        payloads: PayloadCodecs,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        post_for: PostFor = own_device_only,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.registry = registry
        self.cache = cache
        self.writer = writer
        # Custom products' scripts and codecs (shared with the commands going down).
        self.payloads = payloads
        self.clock = clock
        self.max_payload = max_payload
        self.post_for = post_for
        self._unparsed_logged: dict[tuple[str, str, int], float] = {}

    async def uplink(self, device: DeviceIdentity, topic: str, payload: bytes) -> Outcome:
        now_ms = self.clock.wall_ms()
        parsed = parse_device_topic(topic)
        if parsed is not None and parsed.namespace == USER:
            return await self._custom(device, now_ms, topic, payload)
        found = (
            device.dialect.classify_uplink(parsed.rest)
            if parsed and parsed.namespace == SYS
            else None
        )
        if found is None:
            # Replies to downlinks, `/ext/session` requests and functions gatehouse does
            # not interpret: logged and passed on to subscribers.
            self._log(device, now_ms, topic, payload, None, "")
            return Outcome(True, stored=self.writer.committed())
        uplink, event = found
        product = self.cache.products.get(device.product_key)
        if len(payload) > self.max_payload:
            result = fault(
                codes.PAYLOAD_FORMAT_ERROR,
                f"payload is {len(payload)} bytes; the limit is {self.max_payload}",
            )
            request_id = request_id_of(payload) if len(payload) <= 2 * self.max_payload else ""
            return self._answer(device, now_ms, topic, b"", request_id, result)
        if product is None:
            return self._answer(
                device, now_ms, topic, payload, "", fault(codes.DEVICE_NOT_FOUND, "no product")
            )
        if uplink is Uplink.RAW_UP:
            return await self._raw_up(device, product, now_ms, topic, payload)
        try:
            request = parse_request(payload)
        except EnvelopeError as exc:
            code = (
                PAYLOAD_NOT_JSON if isinstance(exc, PayloadNotJson) else codes.PAYLOAD_FORMAT_ERROR
            )
            result = fault(code, str(exc))
            return self._answer(device, now_ms, topic, payload, request_id_of(payload), result)
        result = await self._request(device, product, uplink, event, request, now_ms)
        return self._answer(
            device, now_ms, topic, payload, request.id, result, method=request.method
        )

    # -- replies and sinks -------------------------------------------------------------

    def _answer(
        self,
        device: DeviceIdentity,
        now_ms: int,
        topic: str,
        payload: bytes,
        request_id: str,
        result: Result,
        reply: bytes | None = None,
        *,
        method: str = "",
        encode_unstored: Callable[[], Awaitable[bytes]] | None = None,
    ) -> Outcome:
        self._log(device, now_ms, topic, payload, result.code, result.message)
        for product_key, device_key, identifier, value, ts in result.latest:
            self.writer.latest(
                product_key, device_key, identifier, orjson.dumps(value).decode(), ts
            )
        if reply is None:
            reply = self._reply(device, request_id, result, method)
        unstored: bytes | Callable[[], Awaitable[bytes]] | None = None
        if result.ok:
            unstored = encode_unstored or self._reply(
                device, request_id, fault(codes.SERVER_ERROR, NOT_STORED), method
            )
        return Outcome(result.ok, reply, self.writer.committed(), unstored)

    @staticmethod
    def _reply(device: DeviceIdentity, request_id: str, result: Result, method: str) -> bytes:
        return device.dialect.reply(request_id, result.code, result.data, result.message, method)

    def _log(
        self,
        device: DeviceIdentity,
        now_ms: int,
        topic: str,
        payload: bytes,
        code: int | None,
        detail: str,
    ) -> None:
        self.writer.event(
            device.product_key,
            device.device_key,
            now_ms,
            "up",
            topic=topic,
            payload=payload,
            code=code,
            detail=detail,
        )

    # -- TSL requests --------------------------------------------------------------------

    async def _request(
        self,
        device: DeviceIdentity,
        product: ProductCredential,
        uplink: Uplink,
        event: str,
        request: Request,
        now_ms: int,
    ) -> Result:
        params = request.params
        if uplink in (Uplink.MEASUREPOINT_POST_BATCH, Uplink.MEASUREPOINT_RESUME_BATCH):
            return await self._batch(device, request, now_ms)
        if not isinstance(params, dict):
            return fault(codes.PAYLOAD_FORMAT_ERROR, "params must be a JSON object")
        if uplink is Uplink.PROPERTY_POST:
            # Alink: params are the properties themselves, each a value or {value, time}.
            points = {
                name: value["value"] if isinstance(value, dict) and "value" in value else value
                for name, value in params.items()
            }
            result = await self._measurepoints(
                device.product_key,
                device.device_key,
                product,
                {"measurepoints": points},
                now_ms,
                skip=False,
            )
            stamps = {
                name: int(value["time"])
                for name, value in params.items()
                if isinstance(value, dict) and isinstance(value.get("time"), int)
            }
            result.latest = [
                (pk, dk, name, value, stamps.get(name, ts))
                for pk, dk, name, value, ts in result.latest
            ]
            return result
        if uplink in (Uplink.MEASUREPOINT_POST, Uplink.MEASUREPOINT_RESUME):
            return await self._measurepoints(
                device.product_key, device.device_key, product, params, now_ms, skip=False
            )
        if uplink is Uplink.EVENT_POST:
            return await self._event(product, event, params, now_ms)
        return await self._attributes(device, uplink, params)

    async def _model(self, product: ProductCredential) -> CompiledModel:
        return await self.registry.compiled_model(
            product.product.orgId, product.product.settings.modelId
        )

    async def _measurepoints(
        self,
        product_key: str,
        device_key: str,
        product: ProductCredential,
        params: Mapping[str, Any],
        now_ms: int,
        *,
        skip: bool,
    ) -> Result:
        points = params.get("measurepoints")
        if not isinstance(points, dict) or not points:
            return fault(codes.PAYLOAD_FORMAT_ERROR, "params.measurepoints must be a JSON object")
        stamp = _time_of(params, now_ms)
        if stamp is None:
            return fault(codes.PAYLOAD_FORMAT_ERROR, "params.time must be milliseconds")
        problems = (await self._model(product)).check_properties(points)
        if problems and not skip:
            return fault(PARAMETER_ERROR, _violations(problems))
        bad = {p.identifier for p in problems}
        latest = [
            (product_key, device_key, name, value, stamp)
            for name, value in points.items()
            if name not in bad
        ]
        return Result(latest=latest, message=_violations(problems) if problems else "")

    async def _batch(self, device: DeviceIdentity, request: Request, now_ms: int) -> Result:
        entries = request.params
        if not isinstance(entries, list) or not entries:
            return fault(codes.PAYLOAD_FORMAT_ERROR, "params must be a list of measurepoint posts")
        skip = request.body.get("skipInvalidMeasurepoints") is True
        allow_offline = request.body.get("allowOfflineSubDevice") is True
        collected = Result()
        for index, entry in enumerate(entries):
            if not isinstance(entry, dict):
                return fault(codes.PAYLOAD_FORMAT_ERROR, f"params[{index}] must be a JSON object")
            product_key = entry.get("productKey") or device.product_key
            device_key = entry.get("deviceKey") or device.device_key
            refused = self.post_for(device, str(product_key), str(device_key), allow_offline)
            if refused is not None:
                return fault(refused[0], f"params[{index}]: {refused[1]}")
            product = self.cache.products.get(str(product_key))
            if product is None:
                return fault(codes.DEVICE_NOT_FOUND, f"params[{index}]: no such product")
            result = await self._measurepoints(
                str(product_key), str(device_key), product, entry, now_ms, skip=skip
            )
            if not result.ok:
                result.message = f"params[{index}]: {result.message}"
                return result
            collected.latest.extend(result.latest)
            if result.message:
                skipped = f"params[{index}] skipped {result.message}"
                collected.message = f"{collected.message}; {skipped}".lstrip("; ")
        return collected

    async def _event(
        self, product: ProductCredential, event: str, params: Mapping[str, Any], now_ms: int
    ) -> Result:
        values = params.get("events", params.get("value"))
        if not isinstance(values, dict):
            return fault(codes.PAYLOAD_FORMAT_ERROR, "params.events must be a JSON object")
        if _time_of(params, now_ms) is None:
            return fault(codes.PAYLOAD_FORMAT_ERROR, "params.time must be milliseconds")
        problems = (await self._model(product)).check_event(event, values)
        if problems:
            return fault(PARAMETER_ERROR, _violations(problems))
        return Result()

    async def _attributes(
        self, device: DeviceIdentity, uplink: Uplink, params: Mapping[str, Any]
    ) -> Result:
        # Attributes are rare and live on the device record, so this reads and writes
        # the registry: it waits for SQLite on this device's connection only.
        names = params.get("attributes")
        try:
            record = await self.registry.get_device(
                device.org_id, device.product_key, device.device_key
            )
            current = record.deviceAttributes
            if uplink is Uplink.ATTRIBUTE_UPDATE:
                if not isinstance(names, dict) or not names:
                    return fault(
                        codes.PAYLOAD_FORMAT_ERROR, "params.attributes must be a JSON object"
                    )
                merged = {**current, **names}
                if len(merged) > MAX_ATTRIBUTES:
                    return fault(
                        PARAMETER_ERROR, f"a device has at most {MAX_ATTRIBUTES} attributes"
                    )
                await self.registry.update_device(record, {"deviceAttributes": merged})
                return Result()
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                return fault(
                    codes.PAYLOAD_FORMAT_ERROR, "params.attributes must be a list of names"
                )
            if uplink is Uplink.ATTRIBUTE_QUERY:
                wanted = names or list(current)
                return Result(data={"attributes": {n: current[n] for n in wanted if n in current}})
            kept = {k: v for k, v in current.items() if k not in names}
            await self.registry.update_device(record, {"deviceAttributes": kept})
            return Result()
        except RegistryError as exc:
            return fault(PARAMETER_ERROR, str(exc))

    # -- Custom data format ------------------------------------------------------------

    async def _raw_up(
        self,
        device: DeviceIdentity,
        product: ProductCredential,
        now_ms: int,
        topic: str,
        payload: bytes,
    ) -> Outcome:
        if product.product.settings.dataFormat != "Custom":
            result = fault(
                codes.PAYLOAD_FORMAT_ERROR,
                "model/up_raw is for products whose dataFormat is Custom; this one is Json",
            )
            return self._answer(device, now_ms, topic, payload, "", result)
        way = await self.payloads.way(product)
        if way is None:
            # No script and no codec: the bytes pass through to subscribers as they are.
            return self._answer(device, now_ms, topic, payload, "", Result())
        scripted = way == "script"
        request_id, method = "", ""
        try:
            decoded = await self.payloads.decode(product, payload)
            request = _decoded_request(decoded, scripted)
        except ScriptError as exc:
            result = fault(exc.code, exc.message)
        else:
            request_id, method = request.id, request.method
            uplink = _uplink_of_method(request.method)
            if uplink is None:
                result = fault(NO_METHOD, f"no known method after decoding: {request.method!r}")
            else:
                kind, event = uplink
                result = await self._request(device, product, kind, event, request, now_ms)
        reply = self._reply_object(device, request_id, result, method, scripted=scripted)
        try:
            encoded = await self.payloads.encode(product, reply)
        except ScriptError as exc:
            # The device still learns the code: the reply goes as JSON in its dialect.
            if result.ok:
                result = fault(exc.code, f"cannot encode the reply: {exc.message}")
            else:
                result.message = f"{result.message}; and cannot encode the reply: {exc.message}"
            return self._answer(device, now_ms, topic, payload, request_id, result, method=method)

        async def encode_unstored() -> bytes:
            """Only when the store failed: the script's cost is not doubled on every post."""
            why = fault(codes.SERVER_ERROR, NOT_STORED)
            body = self._reply_object(device, request_id, why, method, scripted=scripted)
            try:
                return await self.payloads.encode(product, body)
            except ScriptError:
                # Its encoder cannot say this one: the device still learns that nothing
                # was stored, as JSON in its dialect (as for any reply it cannot encode).
                return self._reply(device, request_id, why, method)

        return self._answer(
            device,
            now_ms,
            topic,
            payload,
            request_id,
            result,
            encoded,
            encode_unstored=encode_unstored,
        )

    # -- custom topics ---------------------------------------------------------------------

    async def _custom(
        self, device: DeviceIdentity, now_ms: int, topic: str, payload: bytes
    ) -> Outcome:
        """A custom topic `/{pk}/{dk}/user/...`: its bytes pass through as they are; with
        the parsing tag, the product's transformPayload (or codec's transform) makes
        them a JSON object on the untagged topic, or nothing is delivered and the log
        has the code. Never answered (Alibaba sends no reply there), never retained.
        What is delivered also goes to the applications' streams whole (a note: the
        message log keeps only the first 16 KiB)."""
        plain, tagged = untagged(topic)
        if len(payload) > self.max_payload:
            # As the core does with any PUBLISH over the limit: not routed, counted; the
            # message log has the code, not the bytes.
            why = f"payload is {len(payload)} bytes; the limit is {self.max_payload}"
            self._log(device, now_ms, topic, b"", codes.PAYLOAD_FORMAT_ERROR, why)
            self._say_undelivered(
                device, topic, codes.PAYLOAD_FORMAT_ERROR, "over the payload limit, not delivered"
            )
            return Outcome(False, stored=self.writer.committed(), oversized=True)
        if not tagged:
            self._log(device, now_ms, topic, payload, None, "")
            fields = {"payloadBase64": base64.b64encode(payload).decode()}
            self._note_custom(device, now_ms, topic, fields, len(payload))
            return Outcome(True, stored=self.writer.committed(), delivery=(topic, payload))
        product = self.cache.products.get(device.product_key)
        try:
            if product is None:
                raise ScriptError(codes.DEVICE_NOT_FOUND, "no product")
            parsed = await self.payloads.transform(product, plain, payload)
            try:
                body = orjson.dumps(parsed)
            except orjson.JSONEncodeError as exc:  # a codec's object that is not JSON
                raise ScriptError(SCRIPT_BAD_RESULT, f"not a JSON object: {exc}") from None
            if len(body) > self.max_payload:
                raise ScriptError(
                    SCRIPT_BAD_RESULT,
                    f"transformPayload made {len(body)} bytes; the limit is {self.max_payload}",
                )
        except ScriptError as exc:
            # What came is recorded (nothing was delivered), with why.
            self._log(device, now_ms, topic, payload, exc.code, exc.message)
            self._say_undelivered(device, plain, exc.code, "not parsed and not delivered")
            return Outcome(False, stored=self.writer.committed())
        # What subscribers get is recorded, as other uplinks with their code.
        self._log(device, now_ms, plain, body, codes.OK, "")
        self._note_custom(device, now_ms, plain, {"value": parsed}, len(body))
        return Outcome(True, stored=self.writer.committed(), delivery=(plain, body))

    def _note_custom(
        self, device: DeviceIdentity, now_ms: int, topic: str, fields: dict[str, Any], size: int
    ) -> None:
        """A custom topic's message for the streams (kind `custom`), whole."""
        data = {"topic": topic, **fields}
        self.writer.note(Note(device.product_key, device.device_key, now_ms, "custom", data, size))

    def _say_undelivered(self, device: DeviceIdentity, topic: str, code: int, what: str) -> None:
        """One log line (the device and the code, never the payload), at most once a
        minute per device and code, so a device failing in a loop cannot flood it."""
        key = (device.product_key, device.device_key, code)
        now = self.clock.monotonic()
        last = self._unparsed_logged.get(key)
        if last is not None and now - last < UNPARSED_LOG_INTERVAL:
            return
        if len(self._unparsed_logged) >= UNPARSED_LOG_KEYS:
            self._unparsed_logged.clear()
        self._unparsed_logged[key] = now
        log.info("%s: %s %s: code %d", device, topic, what, code)

    def _reply_object(
        self,
        device: DeviceIdentity,
        request_id: str,
        result: Result,
        method: str,
        *,
        scripted: bool,
    ) -> dict[str, Any]:
        """The reply a codec encodes: in the device's dialect; for Alibaba's scripts
        always Alink's shape, whose `method` their protocolToRawData chooses a frame by."""
        envelope = SCRIPT_DIALECT if scripted else device.dialect
        code = device.dialect.code(result.code)  # the codes are the device's dialect's
        body = envelope.encode_reply(request_id, code, result.data, result.message, method)
        reply: dict[str, Any] = orjson.loads(body)
        return reply


def _decoded_request(decoded: dict[str, Any], scripted: bool) -> Request:
    """A decoded object as a request; a script's that is not one is its shape fault."""
    try:
        return parse_request(orjson.dumps(decoded))
    except (EnvelopeError, TypeError) as exc:
        code = SCRIPT_BAD_RESULT if scripted else codes.PAYLOAD_FORMAT_ERROR
        raise ScriptError(code, f"the decoded request: {exc}") from None


_METHODS = {
    # EnOS
    "thing.measurepoint.post": Uplink.MEASUREPOINT_POST,
    "thing.measurepoint.post.batch": Uplink.MEASUREPOINT_POST_BATCH,
    "thing.measurepoint.resume": Uplink.MEASUREPOINT_RESUME,
    "thing.measurepoint.resume.batch": Uplink.MEASUREPOINT_RESUME_BATCH,
    "thing.attribute.update": Uplink.ATTRIBUTE_UPDATE,
    # Alink (what Alibaba's rawDataToProtocol produces)
    "thing.event.property.post": Uplink.PROPERTY_POST,
}


def _uplink_of_method(method: str) -> tuple[Uplink, str] | None:
    """A decoded raw request's method, in either dialect, as the topic it stands for."""
    found = _METHODS.get(method)
    if found is not None:
        return found, ""
    parts = method.split(".")
    if len(parts) == 4 and parts[:2] == ["thing", "event"] and parts[3] == "post" and parts[2]:
        return Uplink.EVENT_POST, parts[2]
    return None
