"""Measurepoint values from a thing model: a random walk within each property's range.

Reads the TSL JSON as the API returns it; only what a device would report is made
(int, float, double, bool, enum); other types are left out.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class _Walk:
    kind: str
    low: float
    high: float
    choices: tuple[Any, ...] = ()
    value: float = 0.0

    def next(self, rng: random.Random) -> Any:
        if self.kind == "bool":
            return rng.random() < 0.5
        if self.kind == "enum":
            return rng.choice(self.choices)
        span = self.high - self.low
        self.value = min(self.high, max(self.low, self.value + rng.uniform(-0.05, 0.05) * span))
        return round(self.value) if self.kind == "int" else round(self.value, 3)


def _number(specs: Mapping[str, Any], key: str, default: float) -> float:
    try:
        return float(specs.get(key, default))
    except (TypeError, ValueError):
        return default


class ModelValues:
    """Values for a product's measurepoints, walking within the thing model's ranges."""

    def __init__(self, tsl: Mapping[str, Any], seed: int | None = None) -> None:
        self.rng = random.Random(seed)  # test data, not secrets
        self.walks: dict[str, _Walk] = {}
        for prop in tsl.get("properties", []):
            data_type = prop.get("dataType", {})
            kind, specs = data_type.get("type"), data_type.get("specs") or {}
            name = prop.get("identifier")
            if not isinstance(name, str):
                continue
            if kind in ("int", "float", "double"):
                low, high = _number(specs, "min", 0), _number(specs, "max", 100)
                walk = _Walk(kind, low, high, value=self.rng.uniform(low, high))
            elif kind == "bool":
                walk = _Walk(kind, 0, 1)
            elif kind == "enum" and isinstance(specs, Mapping) and specs:
                walk = _Walk(kind, 0, 0, tuple(int(k) if k.isdigit() else k for k in specs))
            else:
                continue
            self.walks[name] = walk

    def next(self) -> dict[str, Any]:
        return {name: walk.next(self.rng) for name, walk in self.walks.items()}
