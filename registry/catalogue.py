"""The product categories gatehouse ships: Quectel's product templates.

A category is one of Quectel's four kinds. A "Defined Standard TSL Model" category
carries a complete thing model: a product created in it starts with that model (the
registry creates it in the organisation as `modelId` = the category's `modelId` the
first time it is used). The catalogue is data, read by the registry and listed by the
API (`categories?action=list`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

CategoryKind = Literal[
    "Self-defined Development",
    "Solutions By Industry",
    "Defined Standard TSL Model",
    "Customized Categories on QuecOne",
]
DEFAULT_CATEGORY = "self-defined"


def _number(
    identifier: str, name: str, kind: str, unit: str, low: str, high: str
) -> dict[str, Any]:
    return {
        "identifier": identifier,
        "name": name,
        "accessMode": "r",
        "dataType": {"type": kind, "specs": {"min": low, "max": high, "unit": unit}},
    }


_BOOL = {"type": "bool", "specs": {"0": "off", "1": "on"}}

TH_SENSOR_TSL: dict[str, Any] = {
    "properties": [
        _number("temperature", "Temperature", "float", "°C", "-40", "125"),
        _number("humidity", "Relative humidity", "float", "%", "0", "100"),
        _number("battery", "Battery level", "int", "%", "0", "100"),
    ],
    "events": [
        {
            "identifier": "thresholdAlarm",
            "type": "alert",
            "outputData": [
                {"identifier": "temperature", "dataType": {"type": "float", "specs": {}}}
            ],
        }
    ],
    "services": [],
}

SMART_PLUG_TSL: dict[str, Any] = {
    "properties": [
        {"identifier": "power", "name": "Switch", "accessMode": "rw", "dataType": _BOOL},
        _number("currentPower", "Current power", "float", "W", "0", "4000"),
        _number("energy", "Energy used", "double", "kWh", "0", "1000000"),
    ],
    "events": [],
    "services": [
        {
            "identifier": "setCountdown",
            "inputData": [
                {"identifier": "seconds", "dataType": {"type": "int", "specs": {"min": "0"}}}
            ],
            "outputData": [],
        }
    ],
}

GATEWAY_TSL: dict[str, Any] = {
    "properties": [
        _number("subDeviceCount", "Sub-devices online", "int", "", "0", "10000"),
        _number("signalStrength", "Signal strength", "int", "dBm", "-140", "0"),
    ],
    "events": [],
    "services": [
        {
            "identifier": "permitJoin",
            "inputData": [
                {"identifier": "seconds", "dataType": {"type": "int", "specs": {"min": "0"}}}
            ],
            "outputData": [],
        }
    ],
}


@dataclass(frozen=True, slots=True)
class Category:
    categoryId: str
    name: str
    kind: CategoryKind
    description: str
    deviceType: str | None = None  # the device type a product of it must have, if any
    modelId: str | None = None  # Defined Standard TSL Model: the model it carries
    tsl: dict[str, Any] | None = field(default=None, repr=False)

    def view(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "categoryId": self.categoryId,
            "name": self.name,
            "kind": self.kind,
            "description": self.description,
            "deviceType": self.deviceType,
        }
        if self.modelId is not None:
            data.update(modelId=self.modelId, tsl=self.tsl)
        return data


CATALOGUE: tuple[Category, ...] = (
    Category(
        DEFAULT_CATEGORY,
        "Self-defined Development",
        "Self-defined Development",
        "Define the thing model after your own hardware's features.",
    ),
    Category(
        "th-sensor",
        "Temperature and humidity sensor",
        "Defined Standard TSL Model",
        "A battery sensor reporting temperature and relative humidity.",
        deviceType="direct",
        modelId="std_th_sensor",
        tsl=TH_SENSOR_TSL,
    ),
    Category(
        "smart-plug",
        "Smart plug",
        "Defined Standard TSL Model",
        "A switchable socket that meters its power and energy.",
        deviceType="direct",
        modelId="std_smart_plug",
        tsl=SMART_PLUG_TSL,
    ),
    Category(
        "gateway",
        "Gateway",
        "Defined Standard TSL Model",
        "A gateway that mounts sub-devices over 485, Zigbee or RS232.",
        deviceType="gateway",
        modelId="std_gateway",
        tsl=GATEWAY_TSL,
    ),
    Category(
        "energy-meter",
        "Energy metering",
        "Solutions By Industry",
        "The energy industry solution: its SaaS platform and app serve the product as is.",
    ),
    Category(
        "quecone-light",
        "Lighting (QuecOne)",
        "Customized Categories on QuecOne",
        "A category with its own control page on QuecOne.",
    ),
)
BY_ID: dict[str, Category] = {c.categoryId: c for c in CATALOGUE}


def category(category_id: str) -> Category:
    """The category of that id; ValueError naming the known ones if there is none."""
    found = BY_ID.get(category_id)
    if found is None:
        raise ValueError(f"category must be one of {', '.join(BY_ID)}, not {category_id!r}")
    return found
