"""The embedded MQTT broker: gatehouse's broker core, with gatehouse's gate plugged in.

amqtt's default event-logger and `$SYS` plugins are left out: gatehouse does not need
them, and they cost throughput on every message.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from broker.amqtt_plugin import GateHooks
from broker.core import CoreLimits, CoreStats, GatehouseBroker
from broker.gate import Gate
from broker.gate.access import DEVICE_NAMESPACES
from broker.gate.links import Links
from broker.protocol.topics import custom_key

AUTH_PLUGIN = "broker.amqtt_plugin.GatehouseAuthPlugin"
TOPIC_PLUGIN = "broker.amqtt_plugin.GatehouseTopicPlugin"


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """The TLS listener's certificate and key, and the CA its clients' certificates
    must come from."""

    cert: Path
    key: Path
    ca: Path


@dataclass(frozen=True, slots=True)
class MqttConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    limits: CoreLimits = field(default_factory=CoreLimits)
    tls_port: int = 0  # 0: no TLS listener
    tls: TlsFiles | None = None


def broker_config(config: MqttConfig, gate: Gate) -> dict[str, Any]:
    listeners: dict[str, Any] = {
        "default": {
            "type": "tcp",
            "bind": f"{config.host}:{config.port}",
            "max_connections": -1,
        }
    }
    if config.tls_port and config.tls is not None:
        # amqtt verifies a client certificate against `cafile` when one is presented
        # (CERT_OPTIONAL): two-way products require one, the others may go without.
        listeners["tls"] = {
            "type": "tcp",
            "bind": f"{config.host}:{config.tls_port}",
            "max_connections": -1,
            "ssl": True,
            "certfile": str(config.tls.cert),
            "keyfile": str(config.tls.key),
            "cafile": str(config.tls.ca),
        }
    return {
        "listeners": listeners,
        "timeout_disconnect_delay": 0,
        "plugins": {AUTH_PLUGIN: {"gate": gate}, TOPIC_PLUGIN: {"gate": gate}},
    }


def never_retained(topic: str) -> bool:
    """Gatehouse's retain rule: nothing under the device namespaces' prefixes, nor on any
    topic of a custom topic's shape (`/{pk}/{dk}/user/...`), whoever publishes it,
    product or not: else an anonymous client could retain one there before the product
    exists (a ProductKey can be chosen at create), and its applications and devices
    would receive it."""
    return topic.startswith(DEVICE_NAMESPACES) or custom_key(topic.split("/", 4)) is not None


class MqttBroker:
    """Starts and stops the broker inside the running event loop."""

    def __init__(self, config: MqttConfig, gate: Gate) -> None:
        self.config = config
        self.gate = gate
        self._hooks = GateHooks(gate)
        self._broker: GatehouseBroker | None = None

    @property
    def links(self) -> Links:
        """What the gate asks of this broker (kick, subscribe, publish); usable once
        `start` has run, and bound to the gate's parts before it (broker/assemble.py)."""
        return self._hooks

    @property
    def stats(self) -> CoreStats | None:
        return self._broker.stats if self._broker is not None else None

    async def start(self) -> None:
        hooks = self._hooks
        # Devices do not retain on the platforms gatehouse emulates (issue 14, item 5).
        limits = replace(self.config.limits, never_retained=never_retained)
        self._broker = GatehouseBroker(
            broker_config(self.config, self.gate), limits=limits, hooks=hooks
        )
        hooks.bind(self._broker)
        await self._broker.start()

    def bound_ports(self) -> dict[str, int]:
        """Each listener's port as bound (the one the system chose, for port 0)."""
        ports: dict[str, int] = {}
        servers = self._broker._servers if self._broker is not None else {}
        for name, server in servers.items():
            sockets = getattr(server.instance, "sockets", None) or ()
            for sock in sockets:
                ports[name] = sock.getsockname()[1]
        return ports

    async def stop(self, drain_timeout: float = 5.0) -> None:
        """Stop accepting, end every connection (wills sent), then shut down."""
        if self._broker is not None:
            await self._broker.drain(drain_timeout)
            self._broker = None
