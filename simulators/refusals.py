"""Why the platform refused a device's CONNECT. MQTT 3.1.1's CONNACK carries only a
return code (5); the platform records its own code and reason in the device's log
(`listMessages`, kind `refused`), once a minute per device and reason."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from simulators.platform import Platform, PlatformError

ENTRY_WAIT = 1.5  # seconds for the refusal to reach the log (it is written behind)
LOGGED_EVERY = 60.0  # seconds: a repeated reason is logged at most this often


def _describe(entry: dict[str, Any]) -> str:
    code = entry.get("code")
    detail = entry.get("detail") or "refused"
    return f"{detail} ({code})" if code is not None else detail


class RefusalReasons:
    """Reads the platform's reason for each refusal of one device, in turn."""

    def __init__(self, platform: Platform, product_key: str, device_key: str) -> None:
        self.platform = platform
        self.key = (product_key, device_key)
        self._newest: dict[str, Any] | None = None
        self._last = ""  # the reason last read in this run

    async def start(self) -> None:
        """Note what the log holds already, so an older refusal is not taken for a new one."""
        try:
            self._newest = await asyncio.to_thread(self.platform.newest_refusal, *self.key)
        except PlatformError:
            self._newest = None

    async def explain(self) -> str:
        """The platform's reason for the refusal that has just happened, or "" if it has
        none to give."""
        deadline = time.monotonic() + ENTRY_WAIT
        while True:
            try:
                entry = await asyncio.to_thread(self.platform.newest_refusal, *self.key)
            except PlatformError as exc:  # an unknown device has no log: the API says why
                return str(exc).partition(": ")[2] or str(exc)
            if entry is not None and (
                self._newest is None or entry.get("time", 0) > self._newest.get("time", 0)
            ):
                self._newest = entry
                self._last = _describe(entry)
                return self._last
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.25)
        # Nothing new: the same reason again, which the platform logs once a minute.
        if self._last:
            return f"{self._last}, as before"
        newest = self._newest
        if newest is not None:
            age = time.time() - newest.get("time", 0) / 1000
            if age < LOGGED_EVERY + 5:
                return f"{_describe(newest)}, logged {age:.0f} s ago"
        return ""
