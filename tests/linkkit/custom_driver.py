"""Alibaba's linkkit SDK, unchanged, on a custom topic, for tests/test_custom_topics.py:
it subscribes to its own `/{pk}/{dn}/user/update`, publishes a temperature/humidity
frame on it with the parsing tag `?_sn=default` (`publish_topic`, as Alibaba's docs
tell firmware to), and prints one JSON line per event, the parsed message included.

    python custom_driver.py HOST PORT PRODUCT_KEY DEVICE_NAME DEVICE_SECRET

Python 3 standard library and linkkit only: it runs outside gatehouse's venv.
"""

from __future__ import annotations

import json
import struct
import sys
import threading
from typing import Any

from linkkit import linkkit


def say(**event: Any) -> None:
    print(json.dumps(event), flush=True)


def main() -> None:
    host, port, pk, dn, secret = sys.argv[1:6]
    update = f"/{pk}/{dn}/user/update"
    lk = linkkit.LinkKit(host_name=host, product_key=pk, device_name=dn, device_secret=secret)
    lk.config_mqtt(port=int(port), secure="")
    connected, subscribed, received = threading.Event(), threading.Event(), threading.Event()

    def on_connect(session_flag: Any, rc: int, userdata: Any) -> None:
        say(event="connect", rc=rc)
        connected.set()

    def on_subscribe_topic(mid: int, granted_qos: Any, userdata: Any) -> None:
        say(event="subscribed", granted=list(granted_qos))
        subscribed.set()

    def on_topic_message(topic: str, payload: bytes, qos: int, userdata: Any) -> None:
        say(event="message", topic=topic, payload=payload.decode())
        received.set()

    lk.on_connect = on_connect
    lk.on_subscribe_topic = on_subscribe_topic
    lk.on_topic_message = on_topic_message
    lk.thing_setup()  # no TSL file
    lk.connect_async()
    if not connected.wait(10):
        say(event="no_connect")
        return
    lk.subscribe_topic(update, 1)
    if subscribed.wait(10):
        # 18.5 C (185 tenths), 48 %.
        rc, _ = lk.publish_topic(update + "?_sn=default", struct.pack(">hB", 185, 48), 1)
        say(event="published", rc=rc)
        received.wait(10)
    lk.disconnect()
    say(event="done")


main()
