"""A simulated device that speaks Custom: its frames come from the firmware's side of a
payload script (examples/th_frame/device.js), run in the same engine as the platform's.

The script defines `deviceToRaw(message)` (what the device sends, as an Alink object:
its property post, its replies, to an array of bytes) and `rawToDevice(bytes)` (the
bytes it receives, a reply or a command, to an object with `id` and `code` or `method`
and `params`). Imports only `broker.protocol`, as the simulators must.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from broker.protocol.scripts import (
    SCRIPT_NO_FUNCTION,
    PayloadScript,
    ScriptError,
    as_bytes,
    as_object,
    signed_bytes,
)

TO_RAW = "deviceToRaw"
FROM_RAW = "rawToDevice"


class RawFrames:
    """The device's codec. Like every PayloadScript, use it on one thread only."""

    def __init__(self, source: str) -> None:
        self.script = PayloadScript(source)
        missing = [name for name in (TO_RAW, FROM_RAW) if not self.script.defines(name)]
        if missing:
            raise ScriptError(
                SCRIPT_NO_FUNCTION,
                f"a device script defines {TO_RAW} and {FROM_RAW}; no {missing[0]}",
            )

    @classmethod
    def from_file(cls, path: Path) -> RawFrames:
        return cls(path.read_text())

    def to_raw(self, message: dict[str, Any]) -> bytes:
        return as_bytes(self.script.call(TO_RAW, message), TO_RAW)

    def from_raw(self, raw: bytes) -> dict[str, Any]:
        return as_object(self.script.call(FROM_RAW, signed_bytes(raw)), FROM_RAW)
