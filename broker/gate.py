"""The device gate: admission, presence, the ACL and the router, behind one object that
the amqtt adapter calls. Everything here is plain Python on identities and bytes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from broker import access
from broker.admission import ConnectAttempt, ConnectLimit, ConnectLimiter, Refusal, admit
from broker.codecs import Codec
from broker.credentials import CredentialCache
from broker.identity import DeviceIdentity, Identity
from broker.routing import DEFAULT_MAX_PAYLOAD, Outcome, Router
from broker.writer import WriteBehind, WriterConfig
from registry import Registry

log = logging.getLogger("gatehouse.gate")

REFUSAL_LOG_INTERVAL = 60.0  # seconds between log lines for one device's repeated refusal
REFUSAL_LOG_KEYS = 10_000  # bound on the memory that throttling takes


@dataclass(frozen=True, slots=True)
class GateConfig:
    allow_anonymous: bool = False
    connect_limit: ConnectLimit = field(default_factory=ConnectLimit)
    max_payload: int = DEFAULT_MAX_PAYLOAD
    writer: WriterConfig = field(default_factory=WriterConfig)


@dataclass(slots=True)
class GateStats:
    admitted: int = 0
    refused: int = 0
    online: int = 0


class Gate:
    def __init__(self, registry: Registry, config: GateConfig, codecs: Mapping[str, Codec]) -> None:
        self.registry = registry
        self.config = config
        self.stats = GateStats()
        self.cache = CredentialCache()
        self.limiter = ConnectLimiter(config.connect_limit)
        self.writer = WriteBehind(registry.store, config.writer)
        self.router = Router(
            registry, self.cache, self.writer, codecs, max_payload=config.max_payload
        )
        self._online: set[tuple[str, str]] = set()
        self._refusals_logged: dict[tuple[str, str, str], float] = {}
        # Set by the adapter: end the connection of the device with this session key.
        self.kick: Callable[[str], None] | None = None
        self.cache.on_revoked = self._revoked

    async def start(self) -> None:
        await self.cache.load(self.registry.store)
        await self.registry.store.reset_presence()
        self.registry.observers.append(self.cache)
        self.writer.start()

    async def stop(self) -> None:
        if self.cache in self.registry.observers:
            self.registry.observers.remove(self.cache)
        for product_key, device_key in list(self._online):
            self.writer.presence(product_key, device_key, False, _now_ms(), activated=False)
        self._online.clear()
        await self.writer.stop()

    # -- connections ---------------------------------------------------------------------

    def admit(self, attempt: ConnectAttempt) -> Identity | Refusal:
        decision = admit(
            attempt,
            self.cache,
            self.limiter,
            time.monotonic(),
            allow_anonymous=self.config.allow_anonymous,
        )
        if isinstance(decision, Refusal):
            self.stats.refused += 1
            self._record_refusal(decision)
        else:
            self.stats.admitted += 1
        return decision

    def _record_refusal(self, refusal: Refusal) -> None:
        """Log and record a refusal, at most once a minute per device and reason, so a
        device retrying in a loop neither floods the log nor fills the database."""
        key = (refusal.reason, refusal.product_key, refusal.device_key)
        now = time.monotonic()
        last = self._refusals_logged.get(key)
        if last is not None and now - last < REFUSAL_LOG_INTERVAL:
            return
        if len(self._refusals_logged) >= REFUSAL_LOG_KEYS:
            self._refusals_logged.clear()
        self._refusals_logged[key] = now
        log.info("CONNECT refused: %s", refusal)
        if refusal.device_key and (refusal.product_key, refusal.device_key) in self.cache.devices:
            self.writer.event(
                refusal.product_key,
                refusal.device_key,
                _now_ms(),
                "refused",
                code=refusal.code,
                detail=refusal.message,
            )

    def connected(self, identity: Identity) -> None:
        if not isinstance(identity, DeviceIdentity):
            return
        key = (identity.product_key, identity.device_key)
        first = self.cache.mark_activated(*key)
        now = _now_ms()
        self._online.add(key)
        self.stats.online = len(self._online)
        self.writer.presence(*key, True, now, activated=first)
        self.writer.event(*key, now, "online", detail="first activation" if first else "")

    def disconnected(self, identity: Identity, reason: str = "") -> None:
        if not isinstance(identity, DeviceIdentity):
            return
        key = (identity.product_key, identity.device_key)
        self._online.discard(key)
        self.stats.online = len(self._online)
        now = _now_ms()
        if key in self.cache.devices:
            self.writer.presence(*key, False, now, activated=False)
            self.writer.event(*key, now, "offline", detail=reason)

    def _revoked(self, product_key: str, device_key: str, deleted: bool) -> None:
        if deleted:
            # Nothing of a deleted device is written after it; a new device with the
            # same key starts clean.
            self.writer.forget(product_key, device_key)
            self.limiter.forget((product_key, device_key))
        if (product_key, device_key) in self._online and self.kick is not None:
            identity = DeviceIdentity(product_key, device_key, "")
            log.info("%s was disabled or deleted: disconnecting it", identity)
            self.kick(identity.session_key)

    # -- the ACL -------------------------------------------------------------------------

    def owner_of(self, product_key: str) -> str | None:
        product = self.cache.products.get(product_key)
        return product.product.orgId if product is not None else None

    def may_publish(self, identity: Identity, topic: str) -> bool:
        return access.may_publish(identity, topic)

    def may_subscribe(self, identity: Identity, topic_filter: str) -> bool:
        return access.may_subscribe(identity, topic_filter, self.owner_of)

    def may_receive(self, identity: Identity, topic: str) -> bool:
        return access.may_receive(identity, topic, self.owner_of)

    # -- messages ------------------------------------------------------------------------

    async def uplink(self, identity: Identity, topic: str, payload: bytes) -> Outcome | None:
        """A device's PUBLISH, past the ACL; None for clients that are not devices."""
        if not isinstance(identity, DeviceIdentity):
            return None
        return await self.router.uplink(identity, topic, payload)


def _now_ms() -> int:
    return int(time.time() * 1000)
