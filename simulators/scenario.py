"""Scenario files for `gatehouse load --scenario FILE` (TOML, or JSON): the same knobs
as the command line, plus bad behaviour that has no flag of its own, so a firmware
engineer can write down a field problem and replay it.

    devices = 500
    gateways = 2
    subdevices_per_gateway = 50
    rate = 200            # posts a second, in all
    duration = 60
    qos = 1
    psm_share = 0.1       # sleeping devices: PSM, waking every psm_cycle s
    psm_cycle = 60
    edrx_share = 0.1      # eDRX: connected, posting once an edrx_cycle
    edrx_cycle = 20.48
    [bad]
    wrong_secret_share = 0.02   # sign with a wrong secret: refused
    bad_value_share = 0.05      # a value outside the thing model: 460
    malformed_share = 0.01      # a payload that is not JSON: 6207
    reconnect_storm_share = 0.01  # reconnect at once, storm_reconnects times: refused
    storm_reconnects = 5
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

Share = Field(default=None, ge=0, le=1)


class ScenarioError(ValueError):
    pass


class Bad(BaseModel):
    model_config = ConfigDict(extra="forbid")
    wrong_secret_share: float | None = Share
    bad_value_share: float | None = Share
    malformed_share: float | None = Share
    reconnect_storm_share: float | None = Share
    storm_reconnects: int | None = Field(default=None, ge=1, le=100)


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid")
    devices: int | None = Field(default=None, ge=0, le=1_000_000)
    gateways: int | None = Field(default=None, ge=0, le=100_000)
    subdevices_per_gateway: int | None = Field(default=None, ge=0, le=100_000)
    rate: float | None = Field(default=None, gt=0, le=1_000_000)
    duration: float | None = Field(default=None, gt=0, le=86_400)
    ramp: float | None = Field(default=None, gt=0, le=1_000_000)
    qos: int | None = Field(default=None, ge=0, le=1)
    psm_share: float | None = Share
    psm_cycle: float | None = Field(default=None, gt=0, le=86_400)
    psm_awake: float | None = Field(default=None, gt=0, le=86_400)
    edrx_share: float | None = Share
    edrx_cycle: float | None = Field(default=None, ge=20.48, le=10_485.76)
    bad: Bad = Field(default_factory=Bad)

    def settings(self) -> dict[str, Any]:
        """The fields the file sets, flattened into LoadConfig's names."""
        found = self.model_dump(exclude={"bad"}, exclude_none=True)
        found.update(self.bad.model_dump(exclude_none=True))
        return found


def load_scenario(path: Path) -> Scenario:
    try:
        raw = path.read_bytes()
        data = tomllib.loads(raw.decode()) if path.suffix == ".toml" else orjson.loads(raw)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, orjson.JSONDecodeError) as exc:
        raise ScenarioError(f"cannot read scenario {path}: {exc}") from None
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise ScenarioError(f"scenario {path}: {problems}") from None
