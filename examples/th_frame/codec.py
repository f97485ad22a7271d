"""The temperature/humidity frame of platform.js as a Python codec, for products that
name it (`gatehouse serve --codec th=examples.th_frame.codec:ThFrameCodec`, product
setting `"codec": "th"`). It decodes and encodes exactly what platform.js does."""

from __future__ import annotations

import struct
from typing import Any

REPORT, SET, REPORT_REPLY, SET_REPLY, REBOOT, SERVICE_REPLY = range(6)
OTHER_REPLY = 0xFF


class ThFrameCodec:
    def decode(self, raw: bytes) -> dict[str, Any]:
        command, request_id = raw[0], str(struct.unpack_from(">i", raw, 1)[0])
        if command == REPORT:
            temperature, humidity = struct.unpack_from(">hB", raw, 5)
            return {
                "method": "thing.event.property.post",
                "id": request_id,
                "version": "1.0",
                "params": {"temperature": temperature / 10, "humidity": humidity},
            }
        if command == SET_REPLY:
            return {"id": request_id, "code": struct.unpack_from(">H", raw, 5)[0], "data": {}}
        if command == SERVICE_REPLY:
            code, ok = struct.unpack_from(">HB", raw, 5)
            return {"id": request_id, "code": code, "data": {"ok": ok == 1}}
        raise ValueError(f"unknown command byte {command}")

    def encode(self, message: dict[str, Any]) -> bytes:
        method, request_id = message.get("method"), int(message.get("id") or 0)
        if method == "thing.service.property.set":
            return struct.pack(">BiH", SET, request_id, message["params"]["interval"])
        if method == "thing.service.reboot":
            return struct.pack(">BiH", REBOOT, request_id, message["params"]["delay"])
        command = REPORT_REPLY if method == "thing.event.property.post" else OTHER_REPLY
        return struct.pack(">BiH", command, request_id, message["code"])
