"""A simulated EnOS device (and gateway) on gmqtt: signs in as the EnOS SDK does,
posts measurepoints and waits for replies, answers services and measurepoint sets,
sleeps like a PSM device, and buffers while offline to upload with `resume`.

It imports nothing of gatehouse's but `broker.protocol`, and talks only MQTT, so it
works against gatehouse or any platform speaking the same protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import gmqtt
import orjson

from broker.protocol import encode_reply, encode_request, parse_device_topic
from broker.protocol.dialects import ENOS, Dialect
from broker.protocol.scripts import ScriptError
from broker.protocol.topics import RAW_DOWN, RAW_UP, REPLY_SUFFIX, raw_up_topic
from simulators.raw import RawFrames

log = logging.getLogger("gatehouse.sim")

MQTT_311 = 4
MAX_BUFFER = 10_000  # posts kept while offline, oldest dropped beyond
# CONNECT attempts before giving up. Retries are a second or more apart (EnOS allows one
# CONNECT a second), and 4 is EnOS's burst: a 5th within 2 minutes blocks for 5 minutes.
CONNECT_ATTEMPTS = 4
ServiceHandler = Callable[[str, Mapping[str, Any]], tuple[int, Any]]


@dataclass(frozen=True, slots=True)
class DeviceCredentials:
    product_key: str
    device_key: str
    secret: str  # the DeviceSecret, or the ProductSecret with `activate`
    activate: bool = False  # dynamic activation (securemode 3)
    dialect: Dialect = ENOS  # or ALINK, to sign and post as linkkit does


class ConnectRefused(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(f"CONNECT refused (CONNACK {code})")
        self.code = code


@dataclass(slots=True)
class DeviceStats:
    connects: int = 0
    refused: int = 0
    sent: int = 0
    replied: int = 0
    faults: int = 0  # replies with a code other than 200
    unanswered: int = 0
    commands: int = 0  # services and sets answered
    latencies_ms: list[float] = field(default_factory=list)
    reply_codes: dict[str, int] = field(default_factory=dict)


def echo_service(service: str, params: Mapping[str, Any]) -> tuple[int, Any]:
    """The default: answer every service with 200 and its input as output."""
    return 200, dict(params)


class SimDevice:
    def __init__(
        self,
        creds: DeviceCredentials,
        host: str = "127.0.0.1",
        port: int = 1883,
        *,
        tls: ssl.SSLContext | None = None,
        keepalive: int = 60,
        on_service: ServiceHandler = echo_service,
        on_secret: Callable[[str], None] | None = None,
        raw: RawFrames | None = None,
        on_latency: Callable[[float], None] | None = None,
        verbose: Callable[[str, str, bytes], None] | None = None,
        subscribe_replies: bool = False,
    ) -> None:
        self.creds = creds
        # Subscribe to its reply topic on connect: a generic MQTT broker does not put a
        # device on its topics as gatehouse and EnOS do.
        self.subscribe_replies = subscribe_replies
        # Where reply latencies (ms) go; without it they are kept in stats.latencies_ms.
        self.on_latency = on_latency
        # Told of each packet sent and received: ("sent" or "received", topic, payload).
        self.verbose = verbose
        self.raw = raw  # Custom format: posts and replies go as the script's frames
        self.host, self.port, self.tls, self.keepalive = host, port, tls, keepalive
        self.on_service = on_service
        self.on_secret = on_secret
        self.stats = DeviceStats()
        self.buffer: deque[dict[str, Any]] = deque(maxlen=MAX_BUFFER)
        self.received: list[tuple[str, bytes]] = []  # commands and notices, for tests
        self._ids = itertools.count(1)
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._mqtt: gmqtt.Client | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.creds.product_key, self.creds.device_key)

    @property
    def connected(self) -> bool:
        return self._mqtt is not None and self._mqtt.is_connected

    def topic(self, rest: str, product_key: str = "", device_key: str = "") -> str:
        pk, dk = product_key or self.creds.product_key, device_key or self.creds.device_key
        return f"/sys/{pk}/{dk}/{rest}"

    # -- connection ------------------------------------------------------------------------

    async def connect(self) -> None:
        creds = self.creds.dialect.device_credentials(
            self.creds.product_key,
            self.creds.device_key,
            self.creds.secret,
            time.time() * 1000,
            activate=self.creds.activate,
        )
        mqtt = gmqtt.Client(creds.client_id, clean_session=True)
        mqtt.set_auth_credentials(creds.username, creds.password)
        mqtt.set_config({"reconnect_retries": 0})
        mqtt.on_message = self._on_message
        try:
            await mqtt.connect(
                self.host,
                self.port,
                ssl=self.tls or False,
                keepalive=self.keepalive,
                version=MQTT_311,
            )
        except gmqtt.mqtt.handler.MQTTConnectError as exc:
            self.stats.refused += 1
            raise ConnectRefused(int(getattr(exc, "_code", 5))) from None
        self._mqtt = mqtt
        self.stats.connects += 1
        if self.subscribe_replies:
            mqtt.subscribe(self.topic(self.creds.dialect.post_reply_topic()), qos=0)
        if self.buffer:
            await self.resume()

    async def close(self) -> None:
        mqtt, self._mqtt = self._mqtt, None
        if mqtt is not None:
            with contextlib.suppress(TimeoutError, OSError):
                await asyncio.wait_for(mqtt.disconnect(), 5)
        for waiter in self._waiting.values():
            if not waiter.done():
                waiter.cancel()
        self._waiting.clear()

    async def connect_with_backoff(
        self,
        attempts: int = CONNECT_ATTEMPTS,
        first: float = 1.0,
        on_failure: Callable[[int, ConnectRefused | OSError], Awaitable[None]] | None = None,
    ) -> None:
        """Connect as devices do, retrying 1, 2, 4 ... seconds apart (capped at 60), at
        most `attempts` times; the last failure is raised. `on_failure(attempt, error)`
        hears of each failure before the wait."""
        delay = first
        for attempt in range(1, attempts + 1):
            try:
                await self.connect()
                return
            except (ConnectRefused, OSError) as exc:
                if on_failure is not None:
                    await on_failure(attempt, exc)
                if attempt == attempts:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60)

    # -- requests ---------------------------------------------------------------------------

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        if self._mqtt is None:
            raise ConnectionError("not connected")
        self._mqtt.publish(topic, payload, qos=qos)
        self.stats.sent += 1
        if self.verbose is not None:
            self.verbose("sent", topic, payload)

    async def request(
        self,
        topic: str,
        method: str,
        params: Any,
        *,
        qos: int = 1,
        reply_within: float = 10.0,
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        """Publish a request and wait for its `_reply`; None if none comes in time."""
        request_id = f"{next(self._ids)}"
        payload = encode_request(request_id, method, params)
        if extra:
            payload = orjson.dumps({**orjson.loads(payload), **extra})
        waiter = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = waiter
        started = time.perf_counter()
        self.publish(topic, payload, qos)
        try:
            reply: dict[str, Any] = await asyncio.wait_for(waiter, reply_within)
        except (TimeoutError, asyncio.CancelledError):
            self._waiting.pop(request_id, None)
            self.stats.unanswered += 1
            return None
        self._count_reply(reply, started)
        return reply

    async def post(
        self,
        points: Mapping[str, Any],
        *,
        qos: int = 1,
        product_key: str = "",
        device_key: str = "",
        reply_within: float = 10.0,
    ) -> dict[str, Any] | None:
        """A property (measurepoint) post in the device's dialect; while offline it is
        buffered for `resume` if the dialect's SDK does that."""
        if self.raw is not None:
            return await self.post_raw(points, qos=qos, reply_within=reply_within)
        dialect = self.creds.dialect
        rest, method, params = dialect.property_post(points, int(time.time() * 1000))
        if not self.connected and dialect.buffers_offline:
            self.buffer.append(params)
            return None
        topic = self.topic(rest, product_key, device_key)
        return await self.request(topic, method, params, qos=qos, reply_within=reply_within)

    async def post_raw(
        self, points: Mapping[str, Any], *, qos: int = 1, reply_within: float = 10.0
    ) -> dict[str, Any] | None:
        """A property post as the script's frame on `model/up_raw`; the reply frame,
        read back through the script, answers it by id."""
        assert self.raw is not None
        request_id = f"{next(self._ids)}"
        message = {
            "id": request_id,
            "version": "1.0",
            "method": "thing.event.property.post",
            "params": dict(points),
        }
        waiter = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = waiter
        started = time.perf_counter()
        self.publish(raw_up_topic(*self.key), self.raw.to_raw(message), qos)
        try:
            reply: dict[str, Any] = await asyncio.wait_for(waiter, reply_within)
        except (TimeoutError, asyncio.CancelledError):
            self._waiting.pop(request_id, None)
            self.stats.unanswered += 1
            return None
        self._count_reply(reply, started)
        return reply

    async def post_event(
        self, event: str, values: Mapping[str, Any], *, qos: int = 0
    ) -> dict[str, Any] | None:
        """An event post (`thing/event/{event}/post`); the EnOS SDK sends these at QoS 0."""
        params = {"events": dict(values), "time": int(time.time() * 1000)}
        topic = self.topic(f"thing/event/{event}/post")
        return await self.request(topic, f"thing.event.{event}.post", params, qos=qos)

    def publish_custom(self, name: str, payload: bytes, *, parse: bool = True, qos: int = 1) -> str:
        """Bytes on the custom topic `/{pk}/{dk}/user/{name}`, tagged `?_sn=default` so
        the product's transformPayload parses them (unless `parse` is False), as
        Alibaba's devices do; nothing is answered there. Returns the topic subscribers
        get the message on (the untagged one)."""
        from broker.protocol.topics import PARSE_TAG, user_prefix

        topic = user_prefix(self.creds.product_key, self.creds.device_key) + name
        self.publish(topic + PARSE_TAG if parse else topic, payload, qos)
        return topic

    async def malformed(self, product_key: str = "", device_key: str = "") -> dict[str, Any] | None:
        """Bad behaviour on purpose: a post whose payload is not JSON. The reply's id
        cannot be known, so the first reply on the topic answers it."""
        topic = self.topic("thing/measurepoint/post", product_key, device_key)
        waiter = asyncio.get_running_loop().create_future()
        self._waiting[""] = waiter
        started = time.perf_counter()
        self.publish(topic, b'{"id": broken', 1)
        try:
            reply: dict[str, Any] = await asyncio.wait_for(waiter, 10)
        except (TimeoutError, asyncio.CancelledError):
            self._waiting.pop("", None)
            self.stats.unanswered += 1
            return None
        self._count_reply(reply, started)
        return reply

    def _count_reply(self, reply: Mapping[str, Any], started: float) -> None:
        elapsed_ms = (time.perf_counter() - started) * 1000
        if self.on_latency is not None:
            self.on_latency(elapsed_ms)
        else:
            self.stats.latencies_ms.append(elapsed_ms)
        self.stats.replied += 1
        code = str(reply.get("code"))
        self.stats.reply_codes[code] = self.stats.reply_codes.get(code, 0) + 1
        if code != "200":
            self.stats.faults += 1

    async def resume(self) -> dict[str, Any] | None:
        """Upload what was buffered while offline, oldest first, in one batch."""
        rest, method, params = self.creds.dialect.resume_batch(self.key, list(self.buffer))
        self.buffer.clear()
        return await self.request(self.topic(rest), method, params)

    async def sleep_cycle(
        self, awake: float, asleep: float, cycles: int, points: Callable[[], Mapping[str, Any]]
    ) -> None:
        """PSM: wake, post once (commands waiting go out after it), stay up, sleep."""
        for _ in range(cycles):
            await self.connect()
            await self.post(points())
            await asyncio.sleep(awake)
            await self.close()
            await asyncio.sleep(asleep)

    # -- what arrives -------------------------------------------------------------------------

    def _on_message(self, client: Any, topic: str, payload: bytes, qos: int, props: Any) -> int:
        if self.verbose is not None:
            self.verbose("received", topic, payload)
        if self.raw is not None and topic.endswith((RAW_UP + REPLY_SUFFIX, RAW_DOWN)):
            self._on_raw(topic, payload)
            return 0
        try:
            body = orjson.loads(payload)
        except orjson.JSONDecodeError:
            self.received.append((topic, payload))
            return 0
        if topic.endswith("_reply") and isinstance(body, dict):
            waiter = self._waiting.pop(str(body.get("id")), None)
            if waiter is not None and not waiter.done():
                waiter.set_result(body)
            return 0
        self.received.append((topic, payload))
        parsed = parse_device_topic(topic)
        if parsed is None or not isinstance(body, dict):
            return 0
        if parsed.rest.startswith("thing/service/"):
            service = parsed.rest.removeprefix("thing/service/")
            raw = body.get("params")
            params: dict[str, Any] = raw if isinstance(raw, dict) else {}
            if service == "measurepoint/set":
                code, data = 200, ""
            else:
                code, data = self.on_service(service, params)
            self.stats.commands += 1
            self.publish(topic + "_reply", encode_reply(str(body.get("id")), code, data))
        elif parsed.rest == "thing/activate/info":
            secret = (body.get("params") or {}).get("deviceSecret")
            if isinstance(secret, str) and self.on_secret is not None:
                self.on_secret(secret)
            self.publish(topic + "_reply", encode_reply(str(body.get("id")), 200))
        return 0

    def _on_raw(self, topic: str, payload: bytes) -> None:
        """A frame for a device with a script: a reply to its post, or a command."""
        assert self.raw is not None
        try:
            body = self.raw.from_raw(payload)
        except ScriptError as exc:
            log.warning("%s: a frame the device script cannot read: %s", topic, exc.message)
            self.received.append((topic, payload))
            return
        if topic.endswith(REPLY_SUFFIX):
            waiter = self._waiting.pop(str(body.get("id")), None)
            if waiter is not None and not waiter.done():
                waiter.set_result(body)
            return
        self.received.append((topic, payload))
        method, params = str(body.get("method", "")), body.get("params")
        params = params if isinstance(params, dict) else {}
        if method.startswith("thing.service.") and method != "thing.service.property.set":
            code, data = self.on_service(method.removeprefix("thing.service."), params)
        else:
            code, data = 200, {}
        reply = {"id": str(body.get("id")), "code": code, "data": data, "method": method}
        self.stats.commands += 1
        self.publish(topic + REPLY_SUFFIX, self.raw.to_raw(reply))
