"""A small synchronous wrapper over paho-mqtt 2 for integration tests."""

from __future__ import annotations

import queue
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

TIMEOUT = 5.0
# MQTT 5 reason code (as paho 2 reports it) -> the MQTT 3.1.1 CONNACK return code sent.
CONNACK_311 = {0: 0, 132: 1, 133: 2, 136: 3, 134: 4, 135: 5}


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    mid: int


@dataclass(frozen=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False


class Client:
    """Connects on creation; `received` collects each `Message` as it arrives."""

    def __init__(
        self,
        port: int,
        client_id: str,
        username: str | None = None,
        password: str | None = None,
        keepalive: int = 60,
        clean_session: bool = True,
        will: Will | None = None,
        manual_ack: bool = False,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.received: queue.Queue[Message] = queue.Queue()
        self.connack: int | None = None
        self.session_present: bool | None = None
        self._connected = threading.Event()
        self.disconnected = threading.Event()
        self._subacks: queue.Queue[list[int]] = queue.Queue()
        self.paho = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv311,
            clean_session=clean_session,
            manual_ack=manual_ack,
            reconnect_on_failure=False,
        )
        if username is not None:
            self.paho.username_pw_set(username, password)
        if will is not None:
            self.paho.will_set(will.topic, will.payload, will.qos, will.retain)
        if tls is not None:
            self.paho.tls_set_context(tls)
        self.paho.on_connect = self._on_connect
        self.paho.on_message = self._on_message
        self.paho.on_subscribe = self._on_subscribe
        self.paho.on_disconnect = self._on_disconnect
        self.paho.connect("127.0.0.1", port, keepalive=keepalive)
        self.paho.loop_start()
        self._connected.wait(TIMEOUT)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        # paho 2 reports MQTT 3.1.1 CONNACK codes as v5 reason codes: 5 arrives as 135.
        self.connack = CONNACK_311.get(reason.value, reason.value)
        self.session_present = bool(flags.session_present)
        self._connected.set()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        self.received.put(
            Message(
                message.topic,
                bytes(message.payload),
                message.qos,
                message.retain,
                message.dup,
                message.mid,
            )
        )

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, codes: Any, props: Any) -> None:
        self._subacks.put([code.value for code in codes])

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        self.disconnected.set()
        self._connected.set()  # a connection that ends before CONNACK: stop waiting for it

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def accepted(self) -> bool:
        return self.connack == 0

    def subscribe(self, topic: str, qos: int = 0) -> int:
        """Subscribe and return the SUBACK code (0 to 2 granted, 0x80 refused)."""
        return self.subscribe_many([(topic, qos)])[0]

    def subscribe_many(self, filters: list[tuple[str, int]]) -> list[int]:
        """One SUBSCRIBE packet with several filters; the SUBACK codes in order."""
        self.paho.subscribe(filters)
        return self._subacks.get(timeout=TIMEOUT)

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        self.paho.publish(topic, payload, qos, retain).wait_for_publish(TIMEOUT)

    def next_message(self, timeout: float = TIMEOUT) -> tuple[str, bytes, int]:
        message = self.received.get(timeout=timeout)
        return message.topic, message.payload, message.qos

    def next_received(self, topic: str, timeout: float = TIMEOUT) -> Message:
        """The next message on `topic`, skipping others (a broker may send strays)."""
        deadline = time.monotonic() + timeout
        while True:
            message = self.received.get(timeout=max(deadline - time.monotonic(), 0.01))
            if message.topic == topic:
                return message

    def barrier(self) -> None:
        """A round trip: once it returns, whatever the server sent this client before
        the call has arrived in `received` (a SUBSCRIBE the ACL refuses has no effect)."""
        self.subscribe("$barrier/none", 0)

    def fall_silent(self) -> None:
        """Stop paho's network loop with the socket left open: no more PINGREQs."""
        self.paho.loop_stop()

    def drop(self) -> None:
        """Close the socket without DISCONNECT, as a device losing power would."""
        self.paho.loop_stop()
        sock = self.paho.socket()
        if sock is not None:
            sock.close()

    def close(self) -> None:
        self.paho.disconnect()
        self.paho.loop_stop()
