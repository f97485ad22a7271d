"""A small synchronous wrapper over paho-mqtt 2 for integration tests."""

from __future__ import annotations

import queue
import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

TIMEOUT = 5.0
# MQTT 5 reason code (as paho 2 reports it) -> the MQTT 3.1.1 CONNACK return code sent.
CONNACK_311 = {0: 0, 132: 1, 133: 2, 136: 3, 134: 4, 135: 5}


class Client:
    """Connects on creation; `messages` collects (topic, payload, qos) as they arrive."""

    def __init__(
        self,
        port: int,
        client_id: str,
        username: str | None = None,
        password: str | None = None,
        keepalive: int = 60,
    ) -> None:
        self.messages: queue.Queue[tuple[str, bytes, int]] = queue.Queue()
        self.connack: int | None = None
        self._connected = threading.Event()
        self._subacks: queue.Queue[list[int]] = queue.Queue()
        self.paho = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        if username is not None:
            self.paho.username_pw_set(username, password)
        self.paho.on_connect = self._on_connect
        self.paho.on_message = self._on_message
        self.paho.on_subscribe = self._on_subscribe
        self.paho.connect("127.0.0.1", port, keepalive=keepalive)
        self.paho.loop_start()
        self._connected.wait(TIMEOUT)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        # paho 2 reports MQTT 3.1.1 CONNACK codes as v5 reason codes: 5 arrives as 135.
        self.connack = CONNACK_311.get(reason.value, reason.value)
        self._connected.set()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        self.messages.put((message.topic, bytes(message.payload), message.qos))

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, codes: Any, props: Any) -> None:
        self._subacks.put([code.value for code in codes])

    @property
    def accepted(self) -> bool:
        return self.connack == 0

    def subscribe(self, topic: str, qos: int = 0) -> int:
        """Subscribe and return the SUBACK code (0 to 2 granted, 0x80 refused)."""
        self.paho.subscribe(topic, qos)
        return self._subacks.get(timeout=TIMEOUT)[0]

    def publish(self, topic: str, payload: bytes, qos: int = 0) -> None:
        self.paho.publish(topic, payload, qos).wait_for_publish(TIMEOUT)

    def next_message(self, timeout: float = TIMEOUT) -> tuple[str, bytes, int]:
        return self.messages.get(timeout=timeout)

    def close(self) -> None:
        self.paho.disconnect()
        self.paho.loop_stop()
