"""Device and gateway simulators and the load runner.

They speak to gatehouse (or any platform with the same protocol) only over MQTT and
HTTP, and import nothing of gatehouse's but `broker.protocol`.
"""

from simulators.device import ConnectRefused, DeviceCredentials, DeviceStats, SimDevice
from simulators.gateway import SimGateway
from simulators.values import ModelValues

__all__ = [
    "ConnectRefused",
    "DeviceCredentials",
    "DeviceStats",
    "ModelValues",
    "SimDevice",
    "SimGateway",
]
