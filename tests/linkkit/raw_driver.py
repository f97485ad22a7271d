"""Alibaba's linkkit SDK, unchanged, as the firmware of the th_frame example
(examples/th_frame/platform.js), for tests/test_custom_format.py. Raw only (no TSL):
it posts one report frame with `thing_raw_post_data`, answers each down_raw frame with
`thing_raw_data_reply` as the firmware would, and prints one JSON line per event.

    python raw_driver.py HOST PORT PRODUCT_KEY DEVICE_NAME DEVICE_SECRET SECONDS

Python 3 standard library and linkkit only: it runs outside gatehouse's venv.
"""

from __future__ import annotations

import json
import struct
import sys
import threading
import time
from typing import Any

from linkkit import linkkit

REPORT, SET, SET_REPLY, REBOOT, SERVICE_REPLY = 0x00, 0x01, 0x03, 0x04, 0x05


def say(**event: Any) -> None:
    print(json.dumps(event), flush=True)


def main() -> None:
    host, port, pk, dn, secret, seconds = sys.argv[1:7]
    lk = linkkit.LinkKit(host_name=host, product_key=pk, device_name=dn, device_secret=secret)
    lk.config_mqtt(port=int(port), secure="")
    connected = threading.Event()

    def on_connect(session_flag: Any, rc: int, userdata: Any) -> None:
        say(event="connect", rc=rc)
        connected.set()

    def on_raw_post(payload: bytes, userdata: Any) -> None:
        say(event="raw_post_reply", hex=payload.hex())

    def on_raw_down(payload: bytes, userdata: Any) -> None:
        say(event="raw_down", hex=payload.hex())
        command, request_id = payload[0], struct.unpack_from(">i", payload, 1)[0]
        if command == REBOOT:
            lk.thing_raw_data_reply(struct.pack(">BiHB", SERVICE_REPLY, request_id, 200, 1))
        elif command == SET:
            lk.thing_raw_data_reply(struct.pack(">BiH", SET_REPLY, request_id, 200))

    lk.on_connect = on_connect
    lk.on_thing_raw_data_post = on_raw_post
    lk.on_thing_raw_data_arrived = on_raw_down
    lk.thing_setup()  # no TSL file: raw data only
    lk.connect_async()
    if not connected.wait(10):
        say(event="no_connect")
        return
    # Report 77: 18.5 C (185 tenths), 48 %.
    lk.thing_raw_post_data(struct.pack(">BihB", REPORT, 77, 185, 48))
    time.sleep(float(seconds))  # online this long: the test's window
    lk.disconnect()
    say(event="done")


main()
