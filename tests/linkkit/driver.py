"""Runs Alibaba's linkkit SDK, unchanged, in its own virtual environment (it needs
paho-mqtt 1.6.1), for tests/test_linkkit.py. Prints one JSON line per event; reads
nothing. Python 3 standard library and linkkit only: it runs outside gatehouse's venv.

    python driver.py HOST PORT PRODUCT_KEY DEVICE_NAME DEVICE_SECRET TSL_FILE SECONDS \
        [SUB_PRODUCT_KEY SUB_DEVICE_NAME SUB_DEVICE_SECRET]

With a sub-device, the device acts as a gateway: it adds the sub-device to its
topology and logs it in, with linkkit's gateway API.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

from linkkit import linkkit


def say(**event: Any) -> None:
    print(json.dumps(event), flush=True)


def main() -> None:
    host, port, pk, dn, secret, tsl, seconds = sys.argv[1:8]
    sub = sys.argv[8:11]
    lk = linkkit.LinkKit(host_name=host, product_key=pk, device_name=dn, device_secret=secret)
    lk.config_mqtt(port=int(port), secure="")
    connected = threading.Event()

    def on_connect(session_flag: Any, rc: int, userdata: Any) -> None:
        say(event="connect", rc=rc)
        connected.set()

    def on_prop_post(request_id: Any, code: int, data: Any, message: Any, userdata: Any) -> None:
        say(event="prop_post_reply", code=code)

    def on_event_post(
        event: str, request_id: Any, code: int, data: Any, message: Any, userdata: Any
    ) -> None:
        say(event="event_post_reply", name=event, code=code)

    def on_raw_post(payload: bytes, userdata: Any) -> None:
        say(event="raw_post_reply", payload=payload.decode("utf-8", "replace"))

    def on_prop_changed(params: Any, userdata: Any) -> None:
        say(event="prop_changed", params=params)

    def on_call_service(identifier: str, request_id: Any, params: Any, userdata: Any) -> None:
        say(event="service", identifier=identifier, params=params)
        lk.thing_answer_service(identifier, request_id, 200, {"ok": True})

    def on_topo_add(request_id: Any, code: int, data: Any, message: Any, userdata: Any) -> None:
        say(event="topo_add_reply", code=code)

    def on_login(request_id: Any, code: int, data: Any, message: Any, userdata: Any) -> None:
        say(event="login_reply", code=code)

    lk.on_gateway_add_subdev_topo_reply = on_topo_add
    lk.on_gateway_login_subdev_reply = on_login
    lk.on_connect = on_connect
    lk.on_thing_prop_post = on_prop_post
    lk.on_thing_event_post = on_event_post
    lk.on_thing_raw_data_post = on_raw_post
    lk.on_thing_prop_changed = on_prop_changed
    lk.on_thing_call_service = on_call_service
    lk.thing_setup(tsl)
    lk.connect_async()
    if not connected.wait(10):
        say(event="no_connect")
        return
    if sub:
        lk.gateway_add_subdev_topo([sub])
        time.sleep(1)
        lk.gateway_login_subdev([sub])
        time.sleep(float(seconds))  # online this long to answer commands: the test's window
        lk.disconnect()
        say(event="done")
        return
    lk.thing_post_property({"temp": 21.5})
    lk.thing_trigger_event(("overheat", {"temp": 99.0}))
    lk.thing_raw_post_data(b"\x01\x02")
    time.sleep(float(seconds))  # online this long to answer commands: the test's window
    lk.disconnect()
    say(event="done")


main()
