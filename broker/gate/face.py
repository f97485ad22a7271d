"""The device gate: admission, presence, the ACL and the router, behind one object that
the amqtt adapter calls. Everything here is plain Python on identities and bytes.

The gate builds nothing: its parts are made and wired in broker/assemble.py, the
composition root, and handed to it.
"""

from __future__ import annotations

import collections
import functools
import logging
from dataclasses import dataclass, field

from broker.clock import Clock
from broker.gate import access
from broker.gate.admission import ConnectAttempt, Refusal, admit
from broker.gate.commands import MAX_WAITING, CommandService
from broker.gate.connect_guard import SIGN_FAILURE_LIMIT, ConnectGuard, ConnectLimit
from broker.gate.credentials import CredentialCache
from broker.gate.custom_downlink import CustomDownlink
from broker.gate.gateways import GatewayService
from broker.gate.identity import DeviceIdentity, Identity
from broker.gate.links import Links
from broker.gate.presence import Presence
from broker.gate.routing import DEFAULT_MAX_PAYLOAD, Outcome, PostFor, Router
from broker.gate.subdevices import SubDeviceSessions
from broker.gate.writer import WriteBehind, WriterConfig
from broker.protocol import codes, encode_request, parse_device_topic
from broker.protocol.topics import SYS
from registry import Registry, ids

log = logging.getLogger("gatehouse.gate")

REFUSAL_LOG_INTERVAL = 60.0  # seconds between log lines for one device's repeated refusal
REFUSAL_LOG_KEYS = 10_000  # bound on the memory that throttling takes
# The reason of the core's drain (broker/core/handler.py), which the gate does not import.
SHUTTING_DOWN = "server shutting down"


@dataclass(frozen=True, slots=True)
class GateConfig:
    allow_anonymous: bool = False
    connect_limit: ConnectLimit = field(default_factory=ConnectLimit)
    sign_failure_limit: ConnectLimit = SIGN_FAILURE_LIMIT
    sign_max_age: float | None = None  # seconds a sign's timestamp may be old; None: any
    max_payload: int = DEFAULT_MAX_PAYLOAD
    writer: WriterConfig = field(default_factory=WriterConfig)
    # Sub-devices online through one gateway at once (EnOS's default).
    max_subdevices_per_gateway: int = 200
    # Commands waiting for one device (Azure keeps 50).
    max_waiting_commands: int = MAX_WAITING


@dataclass(slots=True)
class GateStats:
    admitted: int = 0
    refused: int = 0
    online: int = 0


class Gate:
    """The face the amqtt adapter calls: each call goes to the part that decides it."""

    def __init__(
        self,
        registry: Registry,
        config: GateConfig,
        *,
        cache: CredentialCache,
        limiter: ConnectGuard,
        writer: WriteBehind,
        sessions: SubDeviceSessions,
        presence: Presence,
        gateways: GatewayService,
        commands: CommandService,
        router: Router,
        downlink: CustomDownlink,
        links: Links,
        clock: Clock,
    ) -> None:
        self.registry = registry
        self.config = config
        self.stats = GateStats()
        self.refusals: collections.Counter[str] = collections.Counter()  # by reason
        self.cache = cache
        self.limiter = limiter
        self.writer = writer
        self.sessions = sessions
        self.presence = presence
        self.gateways = gateways
        self.commands = commands
        self.router = router
        self.downlink = downlink  # applications' messages to custom topics
        self.links = links
        self.clock = clock
        self._refusals_logged: dict[tuple[str, str, str], float] = {}
        self._by_certificate: dict[str, str] = {}  # serial -> session key, while connected

    async def start(self) -> None:
        await self.cache.load(self.registry)
        await self.registry.telemetry.reset_presence()
        self.registry.observers.append(self.cache)
        self.writer.start()
        await self.commands.start()

    async def stop(self) -> None:
        if self.cache in self.registry.observers:
            self.registry.observers.remove(self.cache)
        await self.commands.stop()
        for product_key, device_key in list(self.presence.direct):
            # Connections the broker's drain did not end: offline as the drain says it.
            identity = DeviceIdentity(product_key, device_key, "")
            self.presence.disconnected(identity, SHUTTING_DOWN)
        await self.writer.stop()
        self.router.payloads.close()  # the codec workers end with the gate, not at exit

    # -- connections ---------------------------------------------------------------------

    def admit(self, attempt: ConnectAttempt) -> Identity | Refusal:
        decision = admit(
            attempt,
            self.cache,
            self.limiter,
            self.clock.monotonic(),
            wall_ms=self.clock.wall_ms(),
            allow_anonymous=self.config.allow_anonymous,
            online=self.presence.direct,
        )
        if isinstance(decision, Refusal):
            self.stats.refused += 1
            self.refusals[decision.reason] += 1
            if decision.announce:  # a block starts: said once, with its end, unthrottled
                key = (decision.reason, decision.product_key, decision.device_key)
                self._refusals_logged.pop(key, None)
            if not decision.quiet:
                self._record_refusal(decision)
        else:
            self.stats.admitted += 1
        return decision

    def _record_refusal(self, refusal: Refusal) -> None:
        """Log and record a refusal, at most once a minute per device and reason, so a
        device retrying in a loop neither floods the log nor fills the database."""
        key = (refusal.reason, refusal.product_key, refusal.device_key)
        now = self.clock.monotonic()
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
                self.clock.wall_ms(),
                "refused",
                code=refusal.code,
                detail=refusal.message,
            )

    def connected(self, identity: Identity) -> None:
        if isinstance(identity, DeviceIdentity):
            self.presence.connected(identity)
            self.stats.online = self.presence.online
            if identity.cert_serial is not None:
                self._by_certificate[identity.cert_serial] = identity.session_key
            if identity.activating:
                self._push_secret(identity)

    def disconnected(self, identity: Identity, reason: str = "disconnected") -> None:
        """The identity's connection ended, for `reason` (the core's: keepalive timeout,
        connection lost, logged in again ...)."""
        if isinstance(identity, DeviceIdentity):
            self.presence.disconnected(identity, reason)
            self.stats.online = self.presence.online
            if identity.cert_serial is not None:
                self._by_certificate.pop(identity.cert_serial, None)

    def _push_secret(self, device: DeviceIdentity) -> None:
        """Dynamic activation: the device gets its DeviceSecret on activate/info."""
        credential = self.cache.devices.get(device.key)
        if credential is None:
            return
        params = {
            "assetId": credential.asset_id,
            "productKey": device.product_key,
            "deviceKey": device.device_key,
            "deviceSecret": credential.secret,
        }
        payload = encode_request(ids.random_token(12), "thing.activate.info", params)
        self.links.publish(f"{device.ext_prefix}thing/activate/info", payload)
        log.info("%s activated dynamically: its DeviceSecret was sent", device)

    def certificate_revoked(self, serial: str) -> None:
        """A revoked certificate stops working at once: its connection ends."""
        session_key = self._by_certificate.pop(serial, None)
        if session_key is not None:
            log.info("certificate %s was revoked: disconnecting %s", serial, session_key)
            self.links.kick(session_key)

    def revoked(self, product_key: str, device_key: str, deleted: bool) -> None:
        """A device disabled or deleted (the cache says so, told by the registry)."""
        if deleted:
            # Nothing of a deleted device is written after it; a new device with the
            # same key starts clean.
            self.writer.forget(product_key, device_key)
            self.limiter.forget((product_key, device_key))
            self.commands.device_deleted((product_key, device_key))
        if self.presence.is_online((product_key, device_key)):
            log.info(
                "%s/%s was %s: logging it out",
                product_key,
                device_key,
                "deleted" if deleted else "disabled",
            )
        self.presence.revoked(product_key, device_key, deleted)
        self.stats.online = self.presence.online

    # -- the ACL -------------------------------------------------------------------------

    def owner_of(self, product_key: str) -> str | None:
        product = self.cache.products.get(product_key)
        return product.product.orgId if product is not None else None

    def may_publish(self, identity: Identity, topic: str) -> bool:
        return access.may_publish(identity, topic, self.sessions.through, self.owner_of)

    def may_subscribe(self, identity: Identity, topic_filter: str) -> bool:
        return access.may_subscribe(identity, topic_filter, self.owner_of, self.sessions.through)

    def may_receive(self, identity: Identity, topic: str) -> bool:
        return access.may_receive(identity, topic, self.owner_of, self.sessions.through)

    # -- messages ------------------------------------------------------------------------

    async def uplink(self, identity: Identity, topic: str, payload: bytes) -> Outcome | None:
        """A device's PUBLISH, past the ACL; None for clients that are not devices."""
        if not isinstance(identity, DeviceIdentity):
            return None
        parsed = parse_device_topic(topic)
        if parsed is None:
            return await self.router.uplink(identity, topic, payload)
        key = (parsed.product_key, parsed.device_key)
        device = identity
        if key != identity.key:
            # A sub-device's topic, published by the gateway it is logged in through
            # (the ACL saw to that): routed, checked and counted as the sub-device's.
            credential = self.cache.devices.get(key)
            org_id = credential.org_id if credential is not None else identity.org_id
            device = DeviceIdentity(*key, org_id, dialect=identity.dialect)
        if parsed.namespace == SYS and parsed.rest.endswith("_reply"):
            await self.commands.reply(key, parsed.rest, payload)
        elif device is identity:
            handled = await self.gateways.request(
                identity, parsed.namespace, parsed.rest, topic, payload
            )
            if handled is not None:
                return handled.followed_by(functools.partial(self.commands.device_seen, key))
        outcome = await self.router.uplink(device, topic, payload)
        # A sleeping device listens right after it speaks: what waits for it goes out,
        # after the reply to what it said.
        return outcome.followed_by(functools.partial(self.commands.device_seen, key))


def gateway_posts(cache: CredentialCache, sessions: SubDeviceSessions) -> PostFor:
    """Whether a batch post from `device` may carry (product_key, device_key): its own,
    and its sub-devices' while they are logged in through it (or with
    allowOfflineSubDevice)."""

    def post_for(
        device: DeviceIdentity, product_key: str, device_key: str, allow_offline: bool
    ) -> tuple[int, str] | None:
        sub = (product_key, device_key)
        if sub == device.key or sessions.through(*sub) == device.key:
            return None
        label = f"{product_key}/{device_key}"
        if cache.gateway_of.get(sub) != device.key:
            return codes.NOT_GATEWAYS_SUB_DEVICE, f"{label} is not a sub-device of this gateway"
        if allow_offline:
            return None
        return (
            codes.DEVICE_DISABLED,
            f"sub-device {label} is not logged in; set allowOfflineSubDevice to post for it",
        )

    return post_for
