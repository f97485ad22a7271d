"""The log of connections closed before they logged in, throttled.

amqtt's `Broker._client_connected` logs a warning for every connection whose CONNECT
is bad or never comes: 1,500 idle sockets wrote 1,500 lines (issue 14, item 14). The
broker core logs them here instead, the first at once and then at most one line per
`INTERVAL` saying how many more there were; amqtt's own line is filtered out.
"""

from __future__ import annotations

import asyncio
import logging

INTERVAL = 5.0  # seconds between two lines about refused connections
# What amqtt's `_client_connected` logs for each failed CONNECT (amqtt/broker.py).
AMQTT_LINE = "Failed to initialize client session"


class RefusedConnects:
    """Counts connections closed before login; logs the first, then a count per interval."""

    def __init__(self, log: logging.Logger, interval: float = INTERVAL) -> None:
        self.log = log
        self.interval = interval
        self._quiet_until = 0.0  # loop time before which no single line is logged
        self._held = 0  # refusals since the last line
        self._latest = ""
        self._summary: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def note(self, peer: str, reason: str) -> None:
        """A connection from `peer` closed before login because of `reason`."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new broker in this process: start afresh
            self._loop, self._quiet_until, self._held, self._summary = loop, 0.0, 0, None
        now = loop.time()
        if now >= self._quiet_until and not self._held:
            self.log.warning("connection from %s closed before logging in: %s", peer, reason)
            self._quiet_until = now + self.interval
            return
        self._held += 1
        self._latest = f"{peer}: {reason}"
        if self._summary is None:
            self._summary = loop.call_at(self._quiet_until, self._log_summary, loop)

    def _log_summary(self, loop: asyncio.AbstractEventLoop) -> None:
        self._summary = None
        if not self._held:
            return
        self.log.warning(
            "%d more connections closed before logging in in the last %.0f s (the latest %s)",
            self._held,
            self.interval,
            self._latest,
        )
        self._held = 0
        self._quiet_until = loop.time() + self.interval


class _WithoutAmqttLine(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(AMQTT_LINE)


# amqtt's broker logs through this logger; its line is replaced by `REFUSED_CONNECTS`.
logging.getLogger("amqtt.broker").addFilter(_WithoutAmqttLine())
REFUSED_CONNECTS = RefusedConnects(logging.getLogger("gatehouse.mqtt"))
