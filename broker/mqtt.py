"""The embedded MQTT broker (amqtt 0.12.1), configured with gatehouse's plugins only.

amqtt's default event-logger and `$SYS` plugins are left out: gatehouse does not need
them, and they cost throughput on every message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from amqtt.broker import Broker

AUTH_PLUGIN = "broker.amqtt_plugin.GatehouseAuthPlugin"
TOPIC_PLUGIN = "broker.amqtt_plugin.GatehouseTopicPlugin"


@dataclass(frozen=True, slots=True)
class MqttConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    allow_anonymous: bool = False


def broker_config(config: MqttConfig) -> dict[str, Any]:
    return {
        "listeners": {
            "default": {
                "type": "tcp",
                "bind": f"{config.host}:{config.port}",
                "max_connections": -1,
            }
        },
        "timeout_disconnect_delay": 0,
        "plugins": {
            AUTH_PLUGIN: {"allow_anonymous": config.allow_anonymous},
            TOPIC_PLUGIN: {},
        },
    }


class MqttBroker:
    """Starts and stops the broker inside the running event loop."""

    def __init__(self, config: MqttConfig) -> None:
        self.config = config
        self._broker: Broker | None = None

    async def start(self) -> None:
        self._broker = Broker(broker_config(self.config))
        await self._broker.start()

    async def stop(self) -> None:
        if self._broker is not None:
            await self._broker.shutdown()
            self._broker = None
