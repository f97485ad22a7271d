"""Latency as an HDR histogram: bounded memory however long a run is, and percentiles
that merge exactly across workers, shards and machines (a report carries its
histograms encoded, and `gatehouse load merge` adds them)."""

from __future__ import annotations

from hdrh.histogram import HdrHistogram  # type: ignore[import-untyped]

LOWEST_US = 1
HIGHEST_US = 600_000_000  # ten minutes, in microseconds: anything longer is clamped
DIGITS = 3  # significant figures: 0.1% error on every percentile
PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0}


class Latency:
    def __init__(self) -> None:
        self._histogram = HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS)

    def record_ms(self, milliseconds: float) -> None:
        micros = min(max(int(milliseconds * 1000), LOWEST_US), HIGHEST_US)
        self._histogram.record_value(micros)

    @property
    def count(self) -> int:
        count: int = self._histogram.get_total_count()
        return count

    def percentiles(self) -> dict[str, float]:
        """p50, p90, p99 and max in milliseconds; empty when nothing was recorded."""
        if not self.count:
            return {}
        found = {
            name: round(self._histogram.get_value_at_percentile(p) / 1000, 2)
            for name, p in PERCENTILES.items()
        }
        found["max"] = round(self._histogram.get_max_value() / 1000, 2)
        return found

    def add(self, other: Latency) -> None:
        self._histogram.add(other._histogram)

    def reset(self) -> None:
        self._histogram.reset()

    def encode(self) -> str:
        """The histogram as text (HdrHistogram's compressed base64 form)."""
        encoded: bytes = self._histogram.encode()
        return encoded.decode()

    @classmethod
    def decode(cls, text: str) -> Latency:
        latency = cls()
        if text:
            latency._histogram.decode_and_add(text.encode())
        return latency
