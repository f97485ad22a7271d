"""`--fail-if "p99>50ms,error_rate>0.1%,connected<100%"`: conditions on a load report
that make the run fail (exit code 3), for CI.

A condition is METRIC OP VALUE[UNIT]: OP one of > >= < <=; UNIT ms or s for
latencies, % for shares. Metrics: p50 p90 p99 max (post to reply), connect_p50
connect_p90 connect_p99 connect_max (CONNECT to CONNACK), error_rate (posts without a
200 reply), connected (devices, or a share of them with %), sent_per_s, connects_per_s.
A metric that was not measured (no reply at all) fails its condition.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

from simulators.load import LoadReport

OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
}
LATENCIES = ("p50", "p90", "p99", "max")
CONDITION = re.compile(r"^\s*([a-z_0-9]+)\s*(>=|<=|>|<)\s*([0-9.]+)\s*(ms|s|%)?\s*$")


class ThresholdError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Threshold:
    metric: str
    op: str
    value: float  # in the metric's own unit: ms, a share from 0 to 1, or a count
    text: str

    def measure(self, report: LoadReport, share: bool) -> float | None:
        name = self.metric
        if name in LATENCIES:
            return report.latency_ms.get(name)
        if name.startswith("connect_") and name.removeprefix("connect_") in LATENCIES:
            return report.connect_latency_ms.get(name.removeprefix("connect_"))
        if name == "error_rate":
            return report.error_rate if report.sent else None
        if name == "connected":
            if not share:
                return float(report.connected)
            return report.connected / report.devices if report.devices else None
        if name == "sent_per_s":
            return report.sent_per_s
        return report.connects_per_s


@dataclass(frozen=True, slots=True)
class Thresholds:
    conditions: tuple[tuple[Threshold, bool], ...]  # each with: given as a share (%)

    @classmethod
    def parse(cls, text: str) -> Thresholds:
        found = []
        for part in filter(None, (p.strip() for p in text.split(","))):
            match = CONDITION.match(part)
            if match is None:
                raise ThresholdError(f"{part!r} is not METRIC>VALUE (e.g. p99>50ms)")
            metric, op, number, unit = match.groups()
            value = float(number)
            latency = metric in LATENCIES or metric.removeprefix("connect_") in LATENCIES
            known = latency or metric in (
                "error_rate",
                "connected",
                "sent_per_s",
                "connects_per_s",
            )
            if not known:
                raise ThresholdError(f"{part!r}: no metric {metric!r}")
            if latency:
                if unit == "%":
                    raise ThresholdError(f"{part!r}: a latency is in ms or s")
                value *= 1000 if unit == "s" else 1
            elif unit in ("ms", "s"):
                raise ThresholdError(f"{part!r}: {metric} is not a time")
            elif unit == "%":
                value /= 100
            elif metric == "error_rate":
                raise ThresholdError(f"{part!r}: give error_rate in % (e.g. 0.1%)")
            found.append((Threshold(metric, op, value, part), unit == "%"))
        return cls(tuple(found))

    def failed(self, report: LoadReport) -> list[str]:
        """The conditions the report meets, said as what was measured; [] when none."""
        said = []
        for threshold, share in self.conditions:
            measured = threshold.measure(report, share)
            if measured is None:
                said.append(f"{threshold.text}: not measured")
            elif OPS[threshold.op](measured, threshold.value):
                shown = f"{100 * measured:.3g}%" if share else f"{measured:g}"
                said.append(f"{threshold.text}: measured {shown}")
        return said
