"""The composition root of the device gate: every part is made here, once, and given
what it needs in its constructor; `serve` calls `assemble_gate` and nothing else wires
parts together (docs/architecture.md, "How the parts are put together").

Dependencies point one way (the cache, the guard, the writer and the sub-device
sessions first; presence on them; commands, gateways and the router on presence; the
gate, a thin face for the amqtt adapter, on all of them). What flows back against
them is named here and nowhere else:

- the broker's links: the broker is built around the gate, so the parts get a
  `LateLinks` that the caller binds to the broker before it accepts anyone;
- presence tells commands that a device came online (commands is built after
  presence, which it reads: the call is forwarded to it);
- the credential cache, told of each registry change, tells the gate of devices
  revoked and certificates revoked (its two listeners, set when the gate exists).
"""

from __future__ import annotations

from collections.abc import Mapping

from broker.clock import SYSTEM_CLOCK, Clock
from broker.gate import Gate, GateConfig, gateway_posts
from broker.gate.codecs import Codec, PayloadCodecs
from broker.gate.commands import CommandService
from broker.gate.connect_guard import ConnectGuard
from broker.gate.credentials import CredentialCache, DeviceId
from broker.gate.custom_downlink import CustomDownlink
from broker.gate.gateways import GatewayService
from broker.gate.links import Links
from broker.gate.presence import Presence
from broker.gate.routing import Router
from broker.gate.subdevices import SubDeviceSessions
from broker.gate.writer import WriteBehind
from registry import Registry


def assemble_gate(
    registry: Registry,
    config: GateConfig,
    codecs: Mapping[str, Codec],
    links: Links,
    clock: Clock = SYSTEM_CLOCK,
) -> Gate:
    """The gate and all its parts, wired; `links` reach the running broker."""
    cache = CredentialCache()
    limiter = ConnectGuard(
        config.connect_limit, config.sign_failure_limit, config.sign_max_age, clock=clock
    )
    writer = WriteBehind(registry.telemetry, config.writer, clock=clock)
    sessions = SubDeviceSessions(config.max_subdevices_per_gateway)
    payloads = PayloadCodecs(registry, codecs)  # Custom products' scripts and codecs

    def online(key: DeviceId) -> None:
        commands.device_seen(key)  # what waits for the device goes out

    presence = Presence(cache, writer, sessions, links, clock=clock, on_online=online)
    commands = CommandService(
        registry,
        cache,
        presence,
        payloads=payloads,  # commands go down through the same scripts and codecs
        writer=writer,  # and are stored in its group commits
        max_waiting=config.max_waiting_commands,
        clock=clock,
    )
    gateways = GatewayService(registry, cache, presence, writer, limiter, clock=clock)
    router = Router(
        registry,
        cache,
        writer,
        payloads=payloads,
        max_payload=config.max_payload,
        post_for=gateway_posts(cache, sessions),
        clock=clock,
    )
    downlink = CustomDownlink(cache, links, presence.is_online, max_payload=config.max_payload)
    gate = Gate(
        registry,
        config,
        cache=cache,
        limiter=limiter,
        writer=writer,
        sessions=sessions,
        presence=presence,
        gateways=gateways,
        commands=commands,
        router=router,
        downlink=downlink,
        links=links,
        clock=clock,
    )
    cache.on_revoked = gate.revoked
    cache.on_certificate_revoked = gate.certificate_revoked
    return gate
